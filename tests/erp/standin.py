#!/usr/bin/python3
"""A stand-in for the Universal Workshop ERP (Frappe v15) for pitstop's tests and demo.

It answers what pitstop sends to the ERP as Frappe v15 would, on the same MariaDB tables pitstop
reads: logins and sessions (tabSessions rows pitstop's own identity check accepts), API keys
(tabUser + __Auth, Fernet), bearer tokens, the Universal Workshop methods (run from
sql/queries/*.sql), /api/resource reads and writes (with Frappe's realtime events on Redis),
file uploads, the desk page, static assets, and socket.io; plus test hooks under /__standin/
(echo, stats, control). HTTP/1.1 is hand-written on asyncio (http11.py): chunked bodies,
100-continue, keep-alive, pipelining, websockets.

Command line (all optional):
  /usr/bin/python3 tests/erp/standin.py
      --host 127.0.0.1 --port 0              listen here (0: a free port)
      --realtime-port -1                     socket.io-only listener, like Frappe's node server
                                             (-1: none, 0: a free port)
      --mariadb mariadb://user:pass@host:port/db   (default $PITSTOP_MARIADB_PRIMARY, else
                                             config/pitstop.json's mariadb.primary)
      --events-redis redis://host:port/db    publish realtime events there ("": don't)
      --site workshop.local                  the site (the events' namespace)
      --encryption-key <fernet key>          (default: config/pitstop.json auth.encryption_key)
      --password admin                       the password of every enabled user
      --queries-dir sql/queries  --rules rules/workshop.json  --config config/pitstop.json
      --files-dir <dir>                      uploads (default: a temp dir removed at exit)
      --delay-ms 0                           delay every non-/__standin answer
Once listening it prints one line, `LISTENING <port> <realtime port or -1>`, and flushes.
SIGTERM and SIGINT stop it at once. It needs python3-pymysql and python3-cryptography (Debian
packages, installed by scripts/setup): run it with /usr/bin/python3.

Test hooks (never delayed, hung or counted as Frappe traffic):
  /__standin/echo (any method)  reads the body streaming; answers {method, target, headers,
      body_bytes, body_sha256, chunked, expect_continue, connection_id, requests_on_connection};
      ?size=N (N pattern bytes, byte i = (i*31+7)%256), chunked=1, status=N, set_cookie=…,
      header=Name:Value (both repeatable), delay_ms=N, content_type=…
  GET /__standin/stats, POST /__standin/reset  counters (requests, connections, by_path,
      open_connections, last_headers, refused_connections, websocket_sessions/messages)
  POST /__standin/control {"delay_ms": N, "refuse": bool, "hang": bool, "for_ms": N}
      (for_ms: put the previous settings back after N ms; a refused listener closes new
      connections, connections already open keep being served)

Files: http11.py (HTTP/1.1, websockets, multipart), frappe_site.py (database, identities,
named queries, documents, realtime events), this file (routes, Frappe's request handling, hooks).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import mimetypes
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qsl, quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import frappe_site  # noqa: E402
import http11  # noqa: E402
from http11 import HttpError, Request, Response  # noqa: E402

FrappeError = frappe_site.FrappeError
Identity = frappe_site.Identity

REPO = Path(__file__).resolve().parents[2]
MAX_BODY = 100 * 1024 * 1024  # uploads and echo
MAX_FORM = 10 * 1024 * 1024  # form and JSON bodies read whole
NO_CACHE = "no-store,no-cache,must-revalidate,max-age=0"  # frappe/app.py process_response
ASSET_MTIME = 1767225600  # 2026-01-01 00:00:00 GMT: assets are the same on every run
PATTERN = bytes((i * 31 + 7) % 256 for i in range(http11.CHUNK))  # CHUNK is a multiple of 256


# ---------------------------------------------------------------------------------------------
# Test hooks' state


class Stats:
    """Counters for /__standin/stats; also the listeners' connection observer."""

    CONTROL_PATHS = ("/__standin/stats", "/__standin/reset", "/__standin/control")

    def __init__(self, control: "Control"):
        self.control = control
        self.open_connections = 0
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.connections = 0
        self.refused = 0
        self.by_path: dict[str, int] = {}
        self.last_headers: list[list[str]] = []
        self.websocket_sessions = 0
        self.websocket_messages = 0

    # the observer
    def accept(self, conn: http11.Connection) -> bool:
        if self.control.refuse:
            self.refused += 1
            return False
        conn.accepted = True  # type: ignore[attr-defined]
        self.connections += 1
        self.open_connections += 1
        return True

    def closed(self, conn: http11.Connection) -> None:
        if getattr(conn, "accepted", False):
            self.open_connections -= 1

    def count(self, req: Request) -> None:
        if req.path in self.CONTROL_PATHS:
            return
        self.requests += 1
        key = f"{req.method} {req.path}"
        self.by_path[key] = self.by_path.get(key, 0) + 1
        if not req.path.startswith("/__standin/"):
            self.last_headers = [[k, v] for k, v in req.headers]

    def as_json(self) -> dict:
        return {"requests": self.requests, "connections": self.connections, "by_path": self.by_path,
                "open_connections": self.open_connections, "last_headers": self.last_headers,
                "refused_connections": self.refused, "websocket_sessions": self.websocket_sessions,
                "websocket_messages": self.websocket_messages}


@dataclass
class Control:
    delay_ms: int = 0
    refuse: bool = False
    hang: bool = False


# ---------------------------------------------------------------------------------------------
# Frappe's request context: the response dict, cookies, messages


http_date = http11.http_date


def cookie_line(name: str, value: str, *, max_age: Optional[int] = None, expires: Optional[float] = None,
                httponly: bool = False, samesite: Optional[str] = "Lax") -> str:
    """werkzeug's dump_cookie: Expires, Max-Age, HttpOnly, Path, SameSite in that order."""
    parts = [f"{name}={value}"]
    if expires is None and max_age is not None:
        expires = time.time() + max_age
    if expires is not None:
        parts.append(f"Expires={http_date(expires)}")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if httponly:
        parts.append("HttpOnly")
    parts.append("Path=/")
    if samesite:
        parts.append(f"SameSite={samesite}")
    return "; ".join(parts)


class Context:
    """What one request builds up in frappe.local: the response dict, the message log and the
    CookieManager's cookies."""

    def __init__(self, app: "App", req: Request):
        self.app = app
        self.req = req
        self.response: dict[str, Any] = {}
        self.messages: list[dict] = []
        self.cookies: dict[str, str] = {}  # name → Set-Cookie line, in first-set order
        self.to_delete: list[str] = []
        self.ident: Identity = Identity()
        self._form: Optional[dict] = None
        self.raw_body = b""
        self.login_manager = False  # a session was resumed (its cookies set)

    # --- cookies (frappe/auth.py CookieManager, LoginManager.set_user_info)

    def set_cookie(self, name: str, value: str, **opts: Any) -> None:
        self.cookies[name] = cookie_line(name, quote(value.encode("utf-8")), **opts)

    def set_user_cookies(self, ident: Identity, sid: Optional[str]) -> None:
        self.set_cookie("sid", sid or "Guest", max_age=self.app.settings.session_expiry_s, httponly=True)
        self.set_cookie("system_user", "no" if ident.user_type == "Website User" else "yes")
        self.set_cookie("full_name", ident.full_name)
        self.set_cookie("user_id", ident.user)
        self.set_cookie("user_image", ident.user_image or "")

    def clear_cookies(self) -> None:
        self.to_delete += ["full_name", "user_id", "sid", "user_image", "system_user"]

    def cookie_lines(self) -> list[str]:
        yesterday = time.time() - 86400
        lines = list(self.cookies.values())
        seen = set()
        for name in self.to_delete:
            if name not in seen:
                seen.add(name)
                lines.append(cookie_line(name, "", expires=yesterday, samesite=None))
        return lines

    # --- request data (frappe/app.py make_form_dict)

    async def form_dict(self) -> dict:
        if self._form is None:
            self._form = await self._read_form()
        return self._form

    async def _read_form(self) -> dict:
        ctype = (self.req.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            return dict(reversed(self.req.args))
        data = self.raw_body = await self.req.body.read_all(MAX_FORM) if not self.req.body.done else b""
        if data and (ctype == "application/json" or ctype.endswith("+json")):
            try:
                parsed = json.loads(data)
            except ValueError:
                raise FrappeError(417, "ValidationError", "Invalid request arguments") from None
            if isinstance(parsed, dict):
                return parsed
            if isinstance(parsed, list):
                return {"data": parsed}
            raise FrappeError(417, "ValidationError", "Invalid request arguments")
        args = dict(reversed(self.req.args))  # the first value of a repeated name wins
        if data and ctype in ("application/x-www-form-urlencoded", ""):
            args.update(dict(reversed(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))))
        args.pop("_", None)
        return args

    async def request_data(self) -> Any:
        """frappe.api.v1 get_request_form_data: the form's `data`, else the raw body, parsed as
        JSON (whatever the Content-Type); the form when that is not JSON."""
        form = await self.form_dict()
        data = form.get("data")
        if isinstance(data, (dict, list)):
            return data
        text = data if data is not None else self.raw_body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return form

    # --- answers

    def json(self, status: int = 200) -> Response:
        return Response(status, frappe_site.dumps(self.response), "application/json")

    def error(self, e: FrappeError) -> Response:
        """frappe.utils.response.report_error (API v1) with allow_error_traceback on: the
        traceback's last line in `exception` (except for 404s), exc_type, and frappe.throw's
        message in _server_messages."""
        if e.status != 404:
            self.response["exception"] = (f"{e.module}." if e.module else "") + e.exc_type + (f": {e.message}" if e.message else "")
        self.response["exc_type"] = e.exc_type
        if e.server_messages is not None:  # plain msgprints, then the exception itself
            self.messages += [{"message": m, "title": "Message"} for m in e.server_messages]
        elif e.message:  # frappe.throw: msgprint(raise_exception=…); its random __frappe_exc_id is left out
            self.messages.append({"message": e.message, "title": e.title or "Message", "indicator": "red", "raise_exception": 1})
        if self.messages:
            self.response["_server_messages"] = json.dumps([json.dumps(m) for m in self.messages])
        if e.exc_type == "AuthenticationError" and self.login_manager:  # handle_exception
            self.clear_cookies()
        return self.json(e.status)

    def finish(self, resp: Response) -> Response:
        """process_response: the default Cache-Control and the cookies."""
        if not resp.has("Cache-Control"):
            resp.add("Cache-Control", NO_CACHE)
        for line in self.cookie_lines():
            resp.add("Set-Cookie", line)
        return resp


def html_page(status: int, title: str, body: str) -> Response:
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
            f"<body>{body}</body></html>\n")
    return Response(status, page.encode(), "text/html; charset=utf-8")


def whitelist_error(method: str) -> FrappeError:
    """frappe.is_whitelisted for a Guest calling a method that is not allow_guest."""
    msg = ("<details><summary>You are not permitted to access this resource.</summary>"
           f"Function <strong>{method}</strong> is not whitelisted.</details>")
    return FrappeError(403, "PermissionError", msg, "Method Not Allowed")


def cint(v: Any) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------------------------------------
# Uploads


class FileSink(http11.PartSink):
    """The uploaded file: written to disk as it arrives, hashed (md5, Frappe's content_hash)."""

    def __init__(self, directory: str, filename: str):
        self.filename = filename
        fd, self.path = tempfile.mkstemp(dir=directory, prefix=".upload-")
        self.file = os.fdopen(fd, "wb")
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.md5.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.file.close()

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class FieldSink(http11.PartSink):
    LIMIT = 1024 * 1024

    def __init__(self, fields: dict, name: str):
        self.fields, self.name, self.parts, self.size = fields, name, [], 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.LIMIT:
            raise HttpError(413, f"form field {self.name} is larger than {self.LIMIT} bytes")
        self.parts.append(data)

    def close(self) -> None:
        self.fields.setdefault(self.name, b"".join(self.parts).decode("utf-8", "replace"))


class NullSink(http11.PartSink):
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def unique_file_name(directory: str, file_name: str, content_hash: str) -> str:
    """File.save_file: a name already taken gets the content hash's last 6 characters."""
    if not os.path.exists(os.path.join(directory, file_name)):
        return file_name
    partial, extn = os.path.splitext(file_name)
    candidate = f"{partial}{content_hash[-6:]}{extn}"
    while os.path.exists(os.path.join(directory, candidate)):
        candidate = f"{partial}{frappe_site.generate_hash(6)}{extn}"
    return candidate


def file_type_of(file_name: str) -> Optional[str]:
    mime = mimetypes.guess_type(file_name)[0]
    ext = mimetypes.guess_extension(mime) if mime else None
    return ext.lstrip(".").upper() if ext else None


# ---------------------------------------------------------------------------------------------
# Routing


@dataclass
class Route:
    methods: Optional[frozenset]  # None: any method
    pattern: re.Pattern
    handler: str  # App method name
    family: str  # frappe | login | hook | static | realtime


def route(methods: Optional[str], pattern: str, handler: str, family: str) -> Route:
    return Route(frozenset(methods.split()) if methods else None, re.compile(pattern), handler, family)


API = r"^/api(?:/v1)?"
ROUTES = [
    route(None, r"^/__standin/echo$", "hook_echo", "hook"),
    route("GET", r"^/__standin/stats$", "hook_stats", "hook"),
    route("POST", r"^/__standin/reset$", "hook_reset", "hook"),
    route("POST", r"^/__standin/control$", "hook_control", "hook"),
    route(None, r"^/socket\.io/?$", "socketio", "realtime"),
    route("GET", r"^/assets/(?P<path>.+)$", "asset", "static"),
    route("GET", r"^/files/(?P<name>[^/]+)$", "public_file", "static"),
    route("GET", r"^/private/files/(?P<name>[^/]+)$", "private_file", "frappe"),
    route(None, API + r"/method/login/?$", "login", "login"),
    route(None, API + r"/method/(?P<method>[^/]+)(?:/.*)?$", "method", "frappe"),
    route("GET", API + r"/resource/(?P<doctype>[^/]+)/?$", "resource_list", "frappe"),
    route("POST", API + r"/resource/(?P<doctype>[^/]+)/?$", "resource_insert", "frappe"),
    route("GET", API + r"/resource/(?P<doctype>[^/]+)/(?P<name>.+?)/?$", "resource_get", "frappe"),
    route("PUT", API + r"/resource/(?P<doctype>[^/]+)/(?P<name>.+?)/?$", "resource_update", "frappe"),
    route("DELETE", API + r"/resource/(?P<doctype>[^/]+)/(?P<name>.+?)/?$", "resource_delete", "frappe"),
    route(None, API + r"/resource/.*$", "method_not_allowed", "frappe"),
    route(None, API + r"(?:/.*)?$", "api_not_found", "frappe"),
    route("GET POST", r"^/app(?:/.*)?$", "desk", "frappe"),
    route("GET POST", r"^/(?:login)?$", "login_page", "frappe"),
    route(None, r"^/.*$", "page_not_found", "frappe"),
]


def match_route(routes: list[Route], req: Request) -> tuple[Route, dict[str, str]]:
    method = "GET" if req.method == "HEAD" else req.method
    for r in routes:
        m = r.pattern.match(req.path)
        if m and (r.methods is None or method in r.methods):
            return r, m.groupdict()
    raise HttpError(404)


# ---------------------------------------------------------------------------------------------
# The application


@dataclass
class WhitelistedMethod:
    allow_guest: bool
    run: Callable[["Context"], Awaitable[Any]]


class App:
    def __init__(self, settings, files_dir: str, delay_ms: int):
        self.settings = settings
        self.files_dir = files_dir
        for sub in ("public", "private", "tmp"):
            os.makedirs(os.path.join(files_dir, sub), exist_ok=True)
        self.db = frappe_site.Database(settings.mariadb)
        self.auth = frappe_site.Auth(self.db, settings)
        self.docs = frappe_site.Documents(self.db, settings.rules)
        self.redis = frappe_site.RedisPublisher(settings.events_redis) if settings.events_redis else None
        self.control = Control(delay_ms=delay_ms)
        self._control_revert: Optional[asyncio.TimerHandle] = None
        self.stats = Stats(self.control)
        self.methods = self._whitelist(frappe_site.load_methods(settings.rules, settings.queries_dir))

    def _whitelist(self, named: dict) -> dict[str, WhitelistedMethod]:
        table = {
            "logout": WhitelistedMethod(True, self.logout),
            "frappe.handler.logout": WhitelistedMethod(True, self.logout),
            "ping": WhitelistedMethod(True, self.ping),
            "frappe.auth.get_logged_user": WhitelistedMethod(False, self.get_logged_user),
            "frappe.core.doctype.user.user.get_roles": WhitelistedMethod(False, self.get_roles),
            "upload_file": WhitelistedMethod(True, self.upload_file),
            "frappe.handler.upload_file": WhitelistedMethod(True, self.upload_file),
        }
        for path, method in named.items():
            table[path.rsplit("/", 1)[-1]] = WhitelistedMethod(False, self._named(method))
        return table

    def _named(self, method) -> Callable[[Context], Awaitable[Any]]:
        async def run(ctx: Context) -> Any:
            return await frappe_site.run_method(self.db, method, await ctx.form_dict())
        return run

    # --- the listeners' entry points

    async def handle(self, req: Request) -> Optional[Response]:
        return await self._dispatch(req, ROUTES)

    async def handle_realtime(self, req: Request) -> Optional[Response]:
        return await self._dispatch(req, [r for r in ROUTES if r.family in ("realtime", "hook")])

    async def _dispatch(self, req: Request, routes: list[Route]) -> Optional[Response]:
        self.stats.count(req)
        try:
            r, params = match_route(routes, req)
        except HttpError:
            return http11.plain(404, "Not Found")
        if r.family != "hook":
            if self.control.hang:
                await self._hang(req)
                return None
            if self.control.delay_ms > 0:
                await asyncio.sleep(self.control.delay_ms / 1000)
        handler = getattr(self, r.handler)
        if r.family in ("frappe", "login"):
            return await self._frappe(req, r, handler, params)
        return await handler(req, **params)

    async def _hang(self, req: Request) -> None:
        """Reads what the client sends and never answers, until it goes away."""
        reader = req.conn.reader
        while await reader.read(http11.CHUNK):
            pass

    async def _frappe(self, req: Request, r: Route, handler, params: dict) -> Response:
        """frappe/app.py application(): resume the session (setting its cookies), validate_auth,
        run the endpoint, handle_exception, process_response."""
        ctx = Context(self, req)
        try:
            if r.family == "login":
                resp = await handler(ctx)
            else:
                sid = self._sid_cookie(req)
                resumed, ident, err = await self.auth.identify(sid, req.header("Authorization"))
                ctx.login_manager = True
                if resumed.session_expired:
                    ctx.response["session_expired"] = 1
                ctx.set_user_cookies(resumed, resumed.sid)
                if err is not None:
                    raise err
                ctx.ident = ident
                resp = await handler(ctx, **params)
        except FrappeError as e:
            resp = ctx.error(e)
        except HttpError:
            raise
        except Exception as e:  # a bug here: Frappe's 500
            traceback.print_exc(file=sys.stderr)
            resp = ctx.error(FrappeError(500, type(e).__name__, str(e), module=type(e).__module__.replace("builtins", "")))
        return ctx.finish(resp)

    @staticmethod
    def _sid_cookie(req: Request) -> Optional[str]:
        for line in req.header_all("Cookie"):
            for pair in line.split(";"):
                k, _, v = pair.strip().partition("=")
                if k == "sid":
                    v = v.strip()
                    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
        return None

    async def publish(self, events: list) -> None:
        if not self.redis:
            return
        for e in events:
            await self.redis.publish("events", frappe_site.realtime_payload(e, self.settings.site))

    # --- login, logout, whitelisted methods

    async def login(self, ctx: Context) -> Response:
        """LoginManager.login / post_login / set_user_info."""
        form = await ctx.form_dict()
        usr, pwd = form.get("usr"), form.get("pwd")
        if not usr or not pwd:
            ctx.response["message"] = "Incomplete login details"
            raise FrappeError(401, "AuthenticationError")
        if len(str(pwd)) > 512:
            ctx.response["message"] = "Password size exceeded the maximum allowed size"
            raise FrappeError(401, "AuthenticationError")
        try:
            ident = await self.auth.login(str(usr), str(pwd), ctx.req.header("X-Forwarded-For", ctx.req.conn.peer).split(",")[0].strip())
        except FrappeError as e:
            if e.status == 401:
                ctx.response["message"] = e.message
                raise FrappeError(401, "AuthenticationError") from None
            raise
        ctx.set_user_cookies(ident, ident.sid)
        if ident.user_type == "Website User":
            ctx.response.update(message="No App", home_page="/me")
        else:
            ctx.response.update(message="Logged In", home_page="/app")
        ctx.response["full_name"] = ident.full_name
        return ctx.json()

    async def method(self, ctx: Context, method: str) -> Response:
        """frappe.handler.handle / execute_cmd / is_whitelisted."""
        entry = self.methods.get(method)
        if entry is None:
            module = method.rsplit(".", 1)[0] if "." in method else "frappe.handler"
            known = {m.rsplit(".", 1)[0] for m in self.methods if "." in m}
            why = (f"module '{module}' has no attribute '{method.rsplit('.', 1)[-1]}'" if module in known
                   else f"No module named '{method.split('.')[0]}'" if "." in method else f"'{method}'")
            raise FrappeError(417, "ValidationError", f"Failed to get method for command {method} with {why}")
        if ctx.ident.is_guest and not entry.allow_guest:
            raise whitelist_error(method)
        data = await entry.run(ctx)
        if isinstance(data, Response):
            return data
        if data is not None:
            ctx.response["message"] = data
        return ctx.json()

    async def logout(self, ctx: Context) -> None:
        """LoginManager.logout: the session row goes, the cookies are cleared, and the request
        goes on as a Guest logged in (set_user_info for a Website User)."""
        if ctx.ident.via == "session" and ctx.ident.sid:
            await self.auth.logout(ctx.ident.sid)
        ctx.clear_cookies()
        guest = Identity()
        ctx.set_user_cookies(guest, "Guest")
        ctx.response.update(message="No App", home_page="/login", full_name=guest.full_name)
        return None

    async def ping(self, ctx: Context) -> str:
        return "pong"

    async def get_logged_user(self, ctx: Context) -> str:
        return ctx.ident.user

    async def get_roles(self, ctx: Context) -> list[str]:
        """frappe.core.doctype.user.user.get_roles: frappe.get_roles(uid, default the session user)."""
        form = await ctx.form_dict()
        return await self.auth.roles(str(form.get("uid") or ctx.ident.user))

    # --- /api/resource

    async def resource_list(self, ctx: Context, doctype: str) -> Response:
        if ctx.ident.is_guest:
            raise FrappeError(403, "PermissionError")
        ctx.response["data"] = await self.docs.list(doctype, await ctx.form_dict())
        return ctx.json()

    async def resource_get(self, ctx: Context, doctype: str, name: str) -> Response:
        if ctx.ident.is_guest:
            raise FrappeError(403, "PermissionError")
        ctx.response["data"] = await self.docs.get(doctype, name)
        return ctx.json()

    async def _write_data(self, ctx: Context) -> dict:
        if ctx.ident.is_guest:
            raise FrappeError(403, "PermissionError")
        data = await ctx.request_data()
        if not isinstance(data, dict):
            raise FrappeError(417, "ValidationError", "Invalid request arguments")
        return data

    async def resource_insert(self, ctx: Context, doctype: str) -> Response:
        data = await self._write_data(ctx)
        doc, events = await self.docs.insert(doctype, data, ctx.ident.user)
        await self.publish(events)
        ctx.response["data"] = doc
        return ctx.json()

    async def resource_update(self, ctx: Context, doctype: str, name: str) -> Response:
        data = await self._write_data(ctx)
        doc, events = await self.docs.update(doctype, name, data, ctx.ident.user)
        await self.publish(events)
        ctx.response["data"] = doc
        return ctx.json()

    async def resource_delete(self, ctx: Context, doctype: str, name: str) -> Response:
        if ctx.ident.is_guest:
            raise FrappeError(403, "PermissionError")
        events = await self.docs.delete(doctype, name, ctx.ident.user)
        await self.publish(events)
        ctx.response["data"] = "ok"
        return ctx.json(202)

    async def method_not_allowed(self, ctx: Context) -> Response:
        return html_page(405, "405 Method Not Allowed", "<h1>Method Not Allowed</h1>"
                         "<p>The method is not allowed for the requested URL.</p>")

    async def api_not_found(self, ctx: Context) -> Response:
        raise FrappeError(404, "DoesNotExistError")

    # --- upload_file (frappe/handler.py) and files

    async def upload_file(self, ctx: Context) -> Any:
        req = ctx.req
        if ctx.ident.is_guest:
            raise FrappeError(403, "PermissionError")
        boundary = http11.multipart_boundary(req.header("Content-Type") or "")
        fields: dict[str, str] = dict(reversed(req.args))
        sink: Optional[FileSink] = None

        def open_part(headers: dict[str, str]) -> http11.PartSink:
            nonlocal sink
            disp = http11.parse_disposition(headers.get("content-disposition", ""))
            name = disp.get("name", "")
            if name == "file" and "filename" in disp and sink is None:
                sink = FileSink(os.path.join(self.files_dir, "tmp"), disp["filename"])
                return sink
            return FieldSink(fields, name) if name else NullSink()

        try:
            if boundary:
                try:
                    await http11.read_multipart(req.body, boundary, open_part)
                except http11.MultipartError as e:
                    raise FrappeError(417, "ValidationError", f"Invalid multipart body: {e}") from None
            else:
                fields.update(await ctx.form_dict())
            return self._save_file(ctx, fields, sink)
        finally:
            if sink is not None:
                sink.discard()

    def _save_file(self, ctx: Context, fields: dict, sink: Optional[FileSink]) -> dict:
        if sink is None:
            raise FrappeError(417, "ValidationError", "Fields `file_name` or `file_url` must be set for File")
        is_private = 1 if cint(fields.get("is_private")) else 0
        file_name = os.path.basename(sink.filename or fields.get("file_name") or "") or frappe_site.generate_hash(10)
        directory = os.path.join(self.files_dir, "private" if is_private else "public")
        content_hash = sink.md5.hexdigest()
        file_name = unique_file_name(directory, file_name, content_hash)
        os.replace(sink.path, os.path.join(directory, file_name))
        now = frappe_site.now_text()
        doc = {"name": frappe_site.generate_hash(10), "owner": ctx.ident.user, "creation": now, "modified": now,
               "modified_by": ctx.ident.user, "docstatus": 0, "idx": 0, "file_name": file_name, "is_private": is_private,
               "file_type": file_type_of(file_name), "is_home_folder": 0, "is_attachments_folder": 0,
               "file_size": sink.size, "file_url": ("/private/files/" if is_private else "/files/") + quote(file_name),
               "folder": fields.get("folder") or "Home", "is_folder": 0, "attached_to_doctype": fields.get("doctype"),
               "attached_to_name": fields.get("docname"), "attached_to_field": fields.get("fieldname"),
               "content_hash": content_hash, "uploaded_to_dropbox": 0, "uploaded_to_google_drive": 0, "doctype": "File"}
        return {k: v for k, v in doc.items() if v is not None}  # as_dict(no_nulls=True)

    async def public_file(self, req: Request, name: str) -> Response:
        """What nginx serves from the site's public/files."""
        return self._static_file(req, os.path.join(self.files_dir, "public", name), None)

    async def private_file(self, ctx: Context, name: str) -> Response:
        """download_private_file: a logged-in user only."""
        if ctx.ident.is_guest:
            return html_page(403, "403 Forbidden", "<h1>Forbidden</h1><p>You don't have permission to access this file</p>")
        return self._static_file(ctx.req, os.path.join(self.files_dir, "private", name), NO_CACHE)

    def _static_file(self, req: Request, path: str, cache_control: Optional[str]) -> Response:
        if not os.path.isfile(path):
            return html_page(404, "404 Not Found", "<h1>404 Not Found</h1>")
        st = os.stat(path)
        etag = f'"{int(st.st_mtime):x}-{st.st_size:x}"'
        headers = [("Last-Modified", http_date(st.st_mtime)), ("ETag", etag)]
        if cache_control:
            headers.append(("Cache-Control", cache_control))
        if etag in [t.strip() for v in req.header_all("If-None-Match") for t in v.split(",")]:
            return Response(304, headers=headers)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(200, content_type=ctype, headers=headers, stream=file_chunks(path), length=st.st_size)

    # --- desk, pages, assets

    async def desk(self, ctx: Context) -> Response:
        """frappe/www/app.py: a Guest is sent to log in."""
        if ctx.ident.is_guest:
            return Response(302, b'<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n',
                            "text/html; charset=utf-8",
                            headers=[("Location", "/login?" + "redirect-to=" + quote(ctx.req.path, safe=""))])
        user = ctx.ident
        boot = json.dumps({"user": user.user, "full_name": user.full_name, "site": self.settings.site})
        return html_page(200, "Universal Workshop",
                         f"<div id=\"body\" data-route=\"{quote(ctx.req.path)}\">Universal Workshop desk</div>\n"
                         f"<script>frappe = {{}}; frappe.boot = {boot};</script>\n"
                         "<script src=\"/assets/frappe/dist/js/desk.bundle.js\"></script>\n"
                         "<link rel=\"stylesheet\" href=\"/assets/frappe/dist/css/desk.bundle.css\">\n")

    async def login_page(self, ctx: Context) -> Response:
        return html_page(200, "Login", "<form method=\"post\" action=\"/api/method/login\">"
                         "<input name=\"usr\"><input name=\"pwd\" type=\"password\"><button>Login</button></form>")

    async def page_not_found(self, ctx: Context) -> Response:
        return html_page(404, "Not Found", "<h1>Not Found</h1><p>The resource you are looking for is not available</p>")

    async def asset(self, req: Request, path: str) -> Response:
        """A generated asset for any .js or .css path, as nginx serves /assets in a bench
        (Cache-Control max-age=31536000, ETag and Last-Modified, 304 on a match)."""
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".js", ".css"):
            return html_page(404, "404 Not Found", "<center><h1>404 Not Found</h1></center>")
        body = asset_content(path, ext)
        etag = f'"{ASSET_MTIME:x}-{len(body):x}"'
        headers = [("Last-Modified", http_date(ASSET_MTIME)), ("ETag", etag), ("Cache-Control", "max-age=31536000")]
        inm = [t.strip() for v in req.header_all("If-None-Match") for t in v.split(",")]
        if etag in inm or "*" in inm or (not inm and req.header("If-Modified-Since") == http_date(ASSET_MTIME)):
            return Response(304, headers=headers)
        ctype = "application/javascript" if ext == ".js" else "text/css"
        return Response(200, body, ctype, headers=headers)

    # --- test hooks

    async def hook_echo(self, req: Request) -> Response:
        sha, size = hashlib.sha256(), 0
        while True:
            data = await req.body.read()
            if not data:
                break
            sha.update(data)
            size += len(data)
        delay = cint(req.arg("delay_ms"))
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        status = cint(req.arg("status")) or 200
        headers = []
        for item in req.arg_all("header"):
            k, sep, v = item.partition(":")
            if sep and k.strip():
                headers.append((k.strip(), v.strip()))
        for c in req.arg_all("set_cookie"):
            headers.append(("Set-Cookie", c))
        chunked = req.arg("chunked") in ("1", "true", "yes")
        content_type = req.arg("content_type")
        size_arg = req.arg("size")
        if size_arg is not None:
            n = max(0, cint(size_arg))
            resp = Response(status, content_type=content_type or "application/octet-stream", headers=headers,
                            stream=pattern_chunks(n), length=n, chunked=chunked)
        else:
            body = json.dumps({"method": req.method, "target": req.target, "headers": [[k, v] for k, v in req.headers],
                               "body_bytes": size, "body_sha256": sha.hexdigest(), "chunked": req.body.chunked,
                               "expect_continue": req.body.expect_continue, "connection_id": req.conn.id,
                               "requests_on_connection": req.conn.requests}).encode()
            resp = Response(status, body, content_type or "application/json", headers=headers)
            if chunked:
                resp.stream, resp.chunked = one_chunk(body), True
        if not resp.has("Cache-Control"):
            resp.add("Cache-Control", NO_CACHE)
        return resp

    async def hook_stats(self, req: Request) -> Response:
        return json_response(self.stats.as_json())

    async def hook_reset(self, req: Request) -> Response:
        await req.body.discard()
        self.stats.reset()
        return json_response(self.stats.as_json())

    async def hook_control(self, req: Request) -> Response:
        try:
            data = json.loads(await req.body.read_all(MAX_FORM) or b"{}")
        except ValueError:
            return json_response({"error": "the body must be a JSON object"}, 400)
        if not isinstance(data, dict):
            return json_response({"error": "the body must be a JSON object"}, 400)
        before = Control(self.control.delay_ms, self.control.refuse, self.control.hang)
        if "delay_ms" in data:
            self.control.delay_ms = max(0, cint(data["delay_ms"]))
        if "refuse" in data:
            self.control.refuse = bool(data["refuse"])
        if "hang" in data:
            self.control.hang = bool(data["hang"])
        if self._control_revert is not None:
            self._control_revert.cancel()
            self._control_revert = None
        if cint(data.get("for_ms")) > 0:  # put the settings back afterwards
            self._control_revert = asyncio.get_running_loop().call_later(cint(data["for_ms"]) / 1000, self._revert, before)
        return json_response({"delay_ms": self.control.delay_ms, "refuse": self.control.refuse, "hang": self.control.hang})

    def _revert(self, before: Control) -> None:
        self.control.delay_ms, self.control.refuse, self.control.hang = before.delay_ms, before.refuse, before.hang
        self._control_revert = None

    # --- socket.io (engine.io v4), as Frappe's node realtime server answers the handshake

    async def socketio(self, req: Request) -> Response:
        if req.arg("EIO") != "4":
            return json_response({"code": 5, "message": "Unsupported protocol version"}, 400)
        transport = req.arg("transport")
        if transport == "websocket":
            if not http11.is_websocket_upgrade(req):
                return json_response({"code": 3, "message": "Bad request"}, 400)
            self.stats.websocket_sessions += 1
            accept = http11.websocket_accept(req.header("Sec-WebSocket-Key") or "")
            return Response(101, headers=[("Upgrade", "websocket"), ("Sec-WebSocket-Accept", accept)],
                            upgrade=self._websocket)
        if transport != "polling":
            return json_response({"code": 0, "message": "Transport unknown"}, 400)
        if req.arg("sid"):
            await req.body.discard()
            return Response(200, b"ok" if req.method == "POST" else b"6", "text/plain; charset=UTF-8")
        handshake = {"sid": frappe_site.generate_hash(20), "upgrades": ["websocket"], "pingInterval": 25000,
                     "pingTimeout": 20000, "maxPayload": 1000000}
        return Response(200, b"0" + json.dumps(handshake, separators=(",", ":")).encode(), "text/plain; charset=UTF-8")

    async def _websocket(self, conn: http11.Connection) -> None:
        def counted(opcode: int, message: bytes) -> None:
            self.stats.websocket_messages += 1
        try:
            await http11.websocket_echo(conn, counted)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def close(self) -> None:
        if self.redis:
            await self.redis.close()
        self.db.close()


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json", headers=[("Cache-Control", NO_CACHE)])


async def pattern_chunks(n: int):
    """n bytes, byte i being (i * 31 + 7) % 256, a chunk at a time."""
    sent = 0
    while sent < n:
        k = min(len(PATTERN), n - sent)
        yield PATTERN[:k]
        sent += k


async def one_chunk(body: bytes):
    yield body


async def file_chunks(path: str):
    with open(path, "rb") as f:
        while True:
            data = f.read(http11.CHUNK)
            if not data:
                return
            yield data


def asset_content(path: str, ext: str) -> bytes:
    """Deterministic content: the same path gives the same bytes (1 to 9 KiB)."""
    seed = zlib.crc32(path.encode())
    size = 1024 + seed % 8192
    if ext == ".js":
        head, line = f"/* standin asset {path} */\n", "window.__standin = (window.__standin || 0) + 1;\n"
    else:
        head, line = f"/* standin asset {path} */\n", f".standin-{seed % 1000} {{ margin: 0; padding: 0; }}\n"
    text = head + line * ((size - len(head)) // len(line) + 1)
    return text[:size].encode()


# ---------------------------------------------------------------------------------------------
# Start-up


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A Frappe v15 stand-in for pitstop's tests and demo.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--realtime-port", type=int, default=-1)
    p.add_argument("--mariadb", default=None)
    p.add_argument("--events-redis", default="")
    p.add_argument("--site", default="workshop.local")
    p.add_argument("--encryption-key", default=None)
    p.add_argument("--password", default="admin")
    p.add_argument("--queries-dir", default=str(REPO / "sql" / "queries"))
    p.add_argument("--rules", default=str(REPO / "rules" / "workshop.json"))
    p.add_argument("--config", default=str(REPO / "config" / "pitstop.json"))
    p.add_argument("--files-dir", default=None)
    p.add_argument("--delay-ms", type=int, default=0)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace):
    config: dict = {}
    try:
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        frappe_site.log(f"cannot read {args.config}: {e}")
    auth = config.get("auth", {})
    mariadb = args.mariadb or os.environ.get("PITSTOP_MARIADB_PRIMARY") or config.get("mariadb", {}).get("primary") \
        or "mariadb://pitstop:pitstop@127.0.0.1:13306/workshop"
    with open(args.rules, encoding="utf-8") as f:
        rules = json.load(f)
    return frappe_site.Settings(
        mariadb=mariadb, site=args.site, encryption_key=args.encryption_key or auth.get("encryption_key", ""),
        password=args.password, session_expiry_s=frappe_site.expiry_seconds(auth.get("session_expiry") or "06:00:00"),
        rules=rules, queries_dir=args.queries_dir, events_redis=args.events_redis)


def raise_fd_limit() -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


async def serve(args: argparse.Namespace) -> None:
    settings = settings_from(args)
    own_files = args.files_dir is None
    files_dir = tempfile.mkdtemp(prefix="standin-files-") if own_files else args.files_dir
    app = App(settings, files_dir, args.delay_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    main = http11.Server(app.handle, "main", MAX_BODY, app.stats)
    listeners = [await main.start(args.host, args.port)]
    realtime_port = -1
    servers = [main]
    if args.realtime_port >= 0:
        realtime = http11.Server(app.handle_realtime, "realtime", MAX_BODY, app.stats)
        listeners.append(await realtime.start(args.host, args.realtime_port))
        realtime_port = listeners[-1].sockets[0].getsockname()[1]
        servers.append(realtime)
    port = listeners[0].sockets[0].getsockname()[1]
    print(f"LISTENING {port} {realtime_port}", flush=True)

    await stop.wait()
    for listener in listeners:
        listener.close()
    for s in servers:
        for task in list(s.tasks):
            task.cancel()
    await asyncio.sleep(0)
    await app.close()
    if own_files:
        shutil.rmtree(files_dir, ignore_errors=True)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # without waiting for a database thread stuck in a query


if __name__ == "__main__":
    main(sys.argv[1:])
