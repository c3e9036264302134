"""Database access for the pxcodes API: one connection per request, schema reset."""
import os

import psycopg2
import psycopg2.extras
from flask import g

SCHEMA = """
DROP TABLE IF EXISTS pxcodes;
DROP TABLE IF EXISTS users;
CREATE TABLE users (
    id            serial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL
);
CREATE TABLE pxcodes (
    pxcode     text PRIMARY KEY,
    procedure  text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


def connect():
    """A new connection from the environment (libpq's PG* variables also apply)."""
    return psycopg2.connect(
        host=os.environ.get("DB_HOST", "postgres"),
        dbname=os.environ.get("DB_NAME", "starter"),
        user=os.environ.get("DB_USER", "admin"),
        password=os.environ.get("DB_PASSWORD", ""),
        connect_timeout=5,
        cursor_factory=psycopg2.extras.RealDictCursor,
    )


def get():
    """The request's connection, opened on first use."""
    if "db" not in g:
        g.db = connect()
    return g.db


def close(_exc=None):
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()
