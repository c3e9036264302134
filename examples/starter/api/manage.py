"""Management commands for the pxcodes API.

    python manage.py resetdb                      drop and create the schema, add user `admin`
                                                  with the password in ADMIN_PASSWORD
    python manage.py runserver [-t HOST] [-p PORT]
"""
import argparse
import os
import signal
import sys

from werkzeug.security import generate_password_hash

import db


def resetdb(_args):
    password = os.environ.get("ADMIN_PASSWORD")
    if not password:
        print("error: ADMIN_PASSWORD is not set", file=sys.stderr)
        return 2
    conn = db.connect()
    with conn, conn.cursor() as cur:
        cur.execute(db.SCHEMA)
        cur.execute(
            "INSERT INTO users (username, password_hash) VALUES (%s, %s)",
            ("admin", generate_password_hash(password)),
        )
    conn.close()
    print("schema created; user admin added")
    return 0


def runserver(args):
    # As PID 1 in a container, SIGTERM has no default action: exit on it so that stopping
    # the container is immediate.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from app import app

    app.run(host=args.host, port=args.port, threaded=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="manage.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("resetdb", help="drop and create the schema and the admin user")
    run = sub.add_parser("runserver", help="serve the API")
    run.add_argument("-t", "--host", default="127.0.0.1")
    run.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    return {"resetdb": resetdb, "runserver": runserver}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
