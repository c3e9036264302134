"""Management commands of the monolith.

    python manage.py migrate          apply the schema migrations not applied yet
    python manage.py collectstatic    copy the front bundle and the app's static files
                                      into STATIC_ROOT
    python manage.py heartbeat        record one heartbeat row (what the cron job runs)
    python manage.py cron             run cron in the foreground with the heartbeat job on
                                      CRON_SCHEDULE (default: every minute)
    python manage.py runserver [-t HOST] [-p PORT]
"""
import argparse
import os
import signal
import shlex
import shutil
import sys

import settings
from migrations import MIGRATIONS


def migrate(_args):
    conn = settings.db()
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY)")
        cur.execute("SELECT name FROM schema_migrations")
        done = {r["name"] for r in cur.fetchall()}
        applied = 0
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            print(f"applied {name}")
            applied += 1
    conn.close()
    print(f"migrate: {applied} applied, {len(MIGRATIONS) - applied} already there ({settings.DB_NAME})")
    return 0


def collectstatic(_args):
    here = os.path.dirname(os.path.abspath(__file__))
    sources = {"app": os.path.join(here, "static"), "front": settings.FRONT_DIST}
    os.makedirs(settings.STATIC_ROOT, exist_ok=True)
    total = 0
    for prefix, source in sources.items():
        if not os.path.isdir(source):
            print(f"error: {source} does not exist (has the front builder run?)", file=sys.stderr)
            return 1
        target = os.path.join(settings.STATIC_ROOT, prefix)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        total += sum(len(files) for _, _, files in os.walk(target))
    print(f"collectstatic: {total} files in {settings.STATIC_ROOT}")
    return 0


def heartbeat(_args):
    import psycopg2

    conn = settings.db()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO heartbeats (source) VALUES ('cron') RETURNING at")
            at = cur.fetchone()["at"]
    except psycopg2.errors.UndefinedTable:
        print("heartbeat: no `heartbeats` table yet (run migrate)", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"heartbeat {at.isoformat()}")
    return 0


CRON_ENV = ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "REDIS_URL", "PATH", "PYTHONUNBUFFERED")


def cron(_args):
    """cron does not pass the container's environment to jobs: write it to a file the job
    sources, then run cron in the foreground with the job's output in the container log."""
    here = os.path.dirname(os.path.abspath(__file__))
    env_file = "/run/monolith-cron.env"
    with open(env_file, "w") as f:
        for key in CRON_ENV:
            if key in os.environ:
                f.write(f"export {key}={shlex.quote(os.environ[key])}\n")
    os.chmod(env_file, 0o600)
    job = (
        f"{settings.CRON_SCHEDULE} root . {env_file} && cd {here}"
        " && python manage.py heartbeat >/proc/1/fd/1 2>/proc/1/fd/2\n"
    )
    with open("/etc/cron.d/monolith", "w") as f:
        f.write(job)
    print(f"cron: heartbeat on schedule `{settings.CRON_SCHEDULE}`", flush=True)
    os.execvp("cron", ["cron", "-f"])


def runserver(args):
    # As PID 1 in a container, SIGTERM has no default action: exit on it so that stopping
    # the container is immediate.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from webapp import app

    app.run(host=args.host, port=args.port, threaded=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="manage.py")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("migrate", "collectstatic", "heartbeat", "cron"):
        sub.add_parser(name)
    run = sub.add_parser("runserver")
    run.add_argument("-t", "--host", default="127.0.0.1")
    run.add_argument("-p", "--port", type=int, default=8000)
    args = parser.parse_args(argv)
    commands = {
        "migrate": migrate,
        "collectstatic": collectstatic,
        "heartbeat": heartbeat,
        "cron": cron,
        "runserver": runserver,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
