"""The monolith's web app: a page built from the database, a visit counter in Redis, the
front bundle and static files collected by `manage.py collectstatic`, and a status API."""
import json
import os

import psycopg2
from flask import Flask, abort, jsonify, render_template_string, send_from_directory

import settings
from migrations import MIGRATIONS

# Static files are served from STATIC_ROOT (collected), not from the code directory.
app = Flask(__name__, static_folder=None)

PAGE = """<!doctype html>
<html><head><title>monolith</title>
<link rel="stylesheet" href="/static/app/site.css">
{% if css %}<link rel="stylesheet" href="/static/front/{{ css }}">{% endif %}
</head><body>
<header><h1>monolith</h1></header>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
<table><tr><th>title</th><th>slug</th></tr>
{% for a in articles %}<tr><td>{{ a.title }}</td><td>{{ a.slug or "" }}</td></tr>{% endfor %}
</table>
<p>visits: {{ visits }} &middot; last heartbeat: {{ heartbeat or "none yet" }}</p>
<p id="rendered"></p>
{% if js %}<script src="/static/front/{{ js }}"></script>{% endif %}
</body></html>
"""


def _manifest():
    try:
        with open(os.path.join(settings.STATIC_ROOT, "front", "manifest.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _status():
    """What the database holds; `None` values where a table is missing (before the dump
    or the migrations). `pending`: the migrations this code has that the database lacks."""
    status = {"articles": None, "migrations": [], "heartbeats": None, "last_heartbeat": None}
    conn = settings.db()
    try:
        with conn.cursor() as cur:
            for query, key in (
                ("SELECT count(*) AS n FROM articles", "articles"),
                ("SELECT count(*) AS n FROM heartbeats", "heartbeats"),
            ):
                try:
                    cur.execute(query)
                    status[key] = cur.fetchone()["n"]
                except psycopg2.errors.UndefinedTable:
                    conn.rollback()
            try:
                cur.execute("SELECT name FROM schema_migrations ORDER BY name")
                status["migrations"] = [r["name"] for r in cur.fetchall()]
            except psycopg2.errors.UndefinedTable:
                conn.rollback()
            if status["heartbeats"]:
                cur.execute("SELECT max(at) AS at FROM heartbeats")
                status["last_heartbeat"] = cur.fetchone()["at"].isoformat()
    finally:
        conn.close()
    status["pending"] = [name for name, _ in MIGRATIONS if name not in status["migrations"]]
    return status


@app.get("/")
def index():
    articles, error = [], None
    conn = settings.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM articles ORDER BY id")
            articles = cur.fetchall()
    except psycopg2.errors.UndefinedTable:
        error = "the database is empty: run `stackctl exec reset-db`"
    finally:
        conn.close()
    visits = settings.cache().incr("visits")
    manifest = _manifest()
    return render_template_string(
        PAGE,
        articles=articles,
        error=error,
        visits=visits,
        heartbeat=_status()["last_heartbeat"],
        css=manifest.get("app.css"),
        js=manifest.get("app.js"),
    )


@app.get("/static/<path:path>")
def static_files(path):
    if not os.path.isdir(settings.STATIC_ROOT):
        abort(404)
    return send_from_directory(settings.STATIC_ROOT, path)


@app.get("/api/status")
def status():
    result = _status()
    result["static"] = sorted(
        os.path.relpath(os.path.join(d, f), settings.STATIC_ROOT)
        for d, _, files in os.walk(settings.STATIC_ROOT)
        for f in files
    )
    result["database"] = settings.DB_NAME
    return jsonify(result)


@app.get("/health")
def health():
    conn = settings.db()
    conn.close()
    settings.cache().ping()
    return jsonify(status="ok")
