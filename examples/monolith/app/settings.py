"""Settings from the environment, and connections to PostgreSQL and Redis."""
import os

import psycopg2
import psycopg2.extras
import redis

DB_HOST = os.environ.get("DB_HOST", "postgres")
DB_NAME = os.environ.get("DB_NAME", "monolith")
DB_USER = os.environ.get("DB_USER", "monolith")
DB_PASSWORD = os.environ.get("DB_PASSWORD", "")
REDIS_URL = os.environ.get("REDIS_URL", "redis://redis:6379/0")
FRONT_DIST = os.environ.get("FRONT_DIST", "/srv/front")
STATIC_ROOT = os.environ.get("STATIC_ROOT", "/srv/static")
CRON_SCHEDULE = os.environ.get("CRON_SCHEDULE", "* * * * *")


def db():
    return psycopg2.connect(
        host=DB_HOST,
        dbname=DB_NAME,
        user=DB_USER,
        password=DB_PASSWORD,
        connect_timeout=5,
        cursor_factory=psycopg2.extras.RealDictCursor,
    )


def cache():
    return redis.Redis.from_url(REDIS_URL, socket_timeout=5)
