"""The pxcodes API: MS-DRG procedure codes behind HTTP basic auth, as paged JSON."""
import hashlib
import math
import re

import psycopg2
from flask import Flask, jsonify, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash

import db

PREFIX = "/api/v1.0"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
CODE_RE = re.compile(r"^[0-9A-Za-z]{1,10}$")

app = Flask(__name__)
app.json.sort_keys = False
app.teardown_appcontext(db.close)

# Password hashing is deliberately slow; remember credentials already checked against a
# given stored hash so that each request does not pay for it again.
_verified = set()


class ApiError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@app.errorhandler(ApiError)
def api_error(err):
    response = jsonify(error=_reason(err.status), message=err.message)
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


@app.errorhandler(HTTPException)
def http_error(err):
    response = jsonify(error=_reason(err.code), message=err.description)
    response.status_code = err.code
    return response


def _reason(status):
    return {
        400: "bad request",
        401: "unauthorized",
        404: "not found",
        405: "method not allowed",
        409: "conflict",
    }.get(status, "error")


@app.before_request
def authenticate():
    if not request.path.startswith(PREFIX):
        return
    auth = request.authorization
    challenge = {"WWW-Authenticate": 'Basic realm="pxcodes"'}
    if auth is None or not auth.username or auth.password is None:
        raise ApiError(401, "authentication required", challenge)
    with db.get().cursor() as cur:
        cur.execute("SELECT password_hash FROM users WHERE username = %s", (auth.username,))
        row = cur.fetchone()
    if row is None:
        raise ApiError(401, "invalid credentials", challenge)
    key = (auth.username, hashlib.sha256(auth.password.encode()).hexdigest(), row["password_hash"])
    if key not in _verified:
        if not check_password_hash(row["password_hash"], auth.password):
            raise ApiError(401, "invalid credentials", challenge)
        _verified.add(key)


def _conditional(payload, status=200):
    """JSON response with a strong ETag over its body; 304 when If-None-Match matches."""
    response = jsonify(payload)
    response.status_code = status
    response.add_etag()
    return response.make_conditional(request)


def _item(row):
    return {
        "pxcode": row["pxcode"],
        "procedure": row["procedure"],
        "url": url_for("get_code", code=row["pxcode"], _external=True),
    }


def _positive_int(name, default, maximum=None):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"`{name}` must be a positive integer, got {raw!r}")
    if value < 1 or (maximum is not None and value > maximum):
        limit = f" between 1 and {maximum}" if maximum else " (1 or more)"
        raise ApiError(400, f"`{name}` must be an integer{limit}, got {value}")
    return value


def _body():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _procedure(data):
    procedure = data.get("procedure")
    if not isinstance(procedure, str) or not procedure.strip() or len(procedure) > 500:
        raise ApiError(400, "`procedure` must be a non-empty string of at most 500 characters")
    return procedure.strip()


def _page_url(page, per_page):
    return url_for("list_codes", page=page, per_page=per_page, _external=True)


@app.get(f"{PREFIX}/pxcodes/")
def list_codes():
    page = _positive_int("page", 1)
    per_page = _positive_int("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    with db.get().cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM pxcodes")
        total = cur.fetchone()["n"]
        pages = max(1, math.ceil(total / per_page))
        if page > pages:
            raise ApiError(404, f"page {page} does not exist (there are {pages})")
        cur.execute(
            "SELECT pxcode, procedure FROM pxcodes ORDER BY pxcode LIMIT %s OFFSET %s",
            (per_page, (page - 1) * per_page),
        )
        rows = cur.fetchall()
    meta = {
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "total": total,
        "first": _page_url(1, per_page),
        "last": _page_url(pages, per_page),
        "next": _page_url(page + 1, per_page) if page < pages else None,
        "prev": _page_url(page - 1, per_page) if page > 1 else None,
    }
    return _conditional({"items": [_item(r) for r in rows], "meta": meta})


@app.post(f"{PREFIX}/pxcodes/")
def create_code():
    data = _body()
    code = data.get("pxcode")
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise ApiError(400, "`pxcode` must be a string of 1 to 10 letters or digits")
    procedure = _procedure(data)
    conn = db.get()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO pxcodes (pxcode, procedure) VALUES (%s, %s) RETURNING pxcode, procedure",
                (code, procedure),
            )
            row = cur.fetchone()
        conn.commit()
    except psycopg2.errors.UniqueViolation:
        conn.rollback()
        raise ApiError(409, f"pxcode {code} already exists")
    response = jsonify(_item(row))
    response.status_code = 201
    response.headers["Location"] = _item(row)["url"]
    return response


def _fetch(code):
    with db.get().cursor() as cur:
        cur.execute("SELECT pxcode, procedure FROM pxcodes WHERE pxcode = %s", (code,))
        row = cur.fetchone()
    if row is None:
        raise ApiError(404, f"pxcode {code} does not exist")
    return row


@app.get(f"{PREFIX}/pxcodes/<code>")
def get_code(code):
    return _conditional(_item(_fetch(code)))


@app.put(f"{PREFIX}/pxcodes/<code>")
def update_code(code):
    procedure = _procedure(_body())
    conn = db.get()
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE pxcodes SET procedure = %s, updated_at = now() WHERE pxcode = %s "
            "RETURNING pxcode, procedure",
            (procedure, code),
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        raise ApiError(404, f"pxcode {code} does not exist")
    return jsonify(_item(row))


@app.delete(f"{PREFIX}/pxcodes/<code>")
def delete_code(code):
    conn = db.get()
    with conn.cursor() as cur:
        cur.execute("DELETE FROM pxcodes WHERE pxcode = %s RETURNING pxcode", (code,))
        row = cur.fetchone()
    conn.commit()
    if row is None:
        raise ApiError(404, f"pxcode {code} does not exist")
    return "", 204


@app.get("/health")
def health():
    with db.get().cursor() as cur:
        cur.execute("SELECT 1")
    return jsonify(status="ok")
