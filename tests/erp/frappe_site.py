"""The Frappe site behind the stand-in: its database (MariaDB through pymysql, on a thread pool),
identities (sessions, API keys, bearer tokens), named queries, documents, and realtime events
(published on Redis as Frappe's emit_via_redis does).

Everything here raises FrappeError for an answer in Frappe's error shape; the HTTP side
(standin.py) renders it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import decimal
import json
import os
import re
import secrets
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlparse

import pymysql
from cryptography.fernet import Fernet, InvalidToken


def log(*parts: Any) -> None:
    print("standin:", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Errors and JSON as Frappe writes them


class FrappeError(Exception):
    """An exception of frappe.exceptions: `status` is its http_status_code. With a `message`,
    it was raised by frappe.throw (so it is also in _server_messages); without, bare.
    `server_messages`, when given, are the plain msgprints that came before a bare raise."""

    def __init__(self, status: int, exc_type: str, message: str = "", title: Optional[str] = None,
                 server_messages: Optional[list[str]] = None, module: str = "frappe.exceptions"):
        super().__init__(message)
        self.status = status
        self.exc_type = exc_type
        self.message = message
        self.title = title
        self.server_messages = server_messages
        self.module = module


def validation(message: str, exc_type: str = "ValidationError") -> FrappeError:
    return FrappeError(417, exc_type, message)


def not_found(doctype: str, name: str) -> FrappeError:
    return FrappeError(404, "DoesNotExistError", f"{doctype} {name} not found")


def json_default(o: Any) -> Any:
    """frappe.utils.response.json_handler for the types pymysql returns."""
    if isinstance(o, (datetime.date, datetime.time)):
        return str(o)
    if isinstance(o, datetime.timedelta):
        return str(o)
    if isinstance(o, decimal.Decimal):
        return float(o)
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode("utf-8", "replace")
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"Object of type {type(o)} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """frappe.utils.response.as_json: compact, ASCII-escaped."""
    return json.dumps(obj, default=json_default, separators=(",", ":")).encode()


def now_text() -> str:
    """frappe.utils.now(): always six fraction digits."""
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")


def generate_hash(length: int = 10) -> str:
    return secrets.token_hex((length + 1) // 2)[:length]


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass
class Settings:
    mariadb: str
    site: str
    encryption_key: str
    password: str
    session_expiry_s: int
    rules: dict
    queries_dir: str
    events_redis: str = ""


def expiry_seconds(text: str) -> int:
    """Frappe's session_expiry "HH:MM[:SS]" in seconds."""
    parts = [int(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.append(0)
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def expiry_text(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------------------------------
# The database: one pymysql connection per pool thread


class DbUnavailable(FrappeError):
    def __init__(self, what: str):
        super().__init__(503, "ServiceUnavailable", f"The database is unavailable: {what}")


CONNECTION_LOST = {2003, 2006, 2013, 2014, 2055}


class Database:
    def __init__(self, url: str, workers: int = 8):
        u = urlparse(url)
        if u.scheme not in ("mariadb", "mysql"):
            raise ValueError(f"--mariadb: expected mariadb://user:pass@host:port/db, got {url!r}")
        self.params = dict(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=unquote(u.username or "root"),
                           password=unquote(u.password or ""), database=(u.path or "/").lstrip("/") or None)
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="db")
        self.local = threading.local()

    def _connect(self) -> pymysql.connections.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None or not conn.open:
            conn = pymysql.connect(**self.params, charset="utf8mb4", autocommit=True, connect_timeout=5,
                                   read_timeout=60, write_timeout=60)
            self.local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _call(self, fn: Callable, args: tuple, retry: bool) -> Any:
        for attempt in (0, 1):
            try:
                conn = self._connect()
            except pymysql.err.Error as e:
                raise DbUnavailable(str(e)) from None
            try:
                return fn(conn, *args)
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as e:
                code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
                if isinstance(e, pymysql.err.InterfaceError) or code in CONNECTION_LOST:
                    self._drop()
                    if retry and attempt == 0:
                        continue
                    raise DbUnavailable(str(e)) from None
                self._rollback(conn)
                raise FrappeError(417, "DataError", str(e.args[1] if len(e.args) > 1 else e)) from None
            except pymysql.err.IntegrityError as e:
                self._rollback(conn)
                if e.args and e.args[0] == 1062:
                    raise FrappeError(409, "DuplicateEntryError", str(e.args[1])) from None
                raise FrappeError(417, "DataError", str(e.args[1] if len(e.args) > 1 else e)) from None
            except (pymysql.err.ProgrammingError, pymysql.err.DataError, pymysql.err.InternalError) as e:
                self._rollback(conn)
                raise FrappeError(417, "DataError", str(e.args[1] if len(e.args) > 1 else e)) from None
            except BaseException:
                self._rollback(conn)
                raise
        raise DbUnavailable("connection lost")

    @staticmethod
    def _rollback(conn) -> None:
        try:
            if conn.open:
                conn.rollback()
        except Exception:
            pass

    async def run(self, fn: Callable, *args: Any, retry: bool = True) -> Any:
        """Runs fn(conn, *args) on a pool thread; `retry` once on a connection found dead."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._call, fn, args, retry)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def query(conn, sql: str, args: tuple = ()) -> tuple[list[str], list[tuple]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, list(cur.fetchall())


def query_one(conn, sql: str, args: tuple = ()) -> Optional[dict]:
    cols, rows = query(conn, sql, args)
    return dict(zip(cols, rows[0])) if rows else None


class Transaction:
    """BEGIN … COMMIT on a pool connection (rolled back on any exception)."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.begin()
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.commit()
        else:
            try:
                self.conn.rollback()
            except Exception:
                pass
        return False


# ---------------------------------------------------------------------------------------------
# Identities


@dataclass
class Identity:
    user: str = "Guest"
    via: str = "guest"  # guest | session | api_key | bearer
    sid: Optional[str] = None  # the live session's sid
    session_expired: bool = False  # a sid cookie that named no live session
    user_type: str = "Website User"
    full_name: str = "Guest"
    user_image: str = ""

    @property
    def is_guest(self) -> bool:
        return self.user == "Guest"


def full_name_of(first: Optional[str], last: Optional[str]) -> str:
    return " ".join(p for p in (first, last) if p)


class Auth:
    """Frappe v15's checks (frappe/auth.py validate_auth, sessions.py), with the SQL pitstop's
    own verifier uses so that both accept the same credentials."""

    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.expiry = settings.session_expiry_s
        self.password = settings.password
        try:
            self.fernet: Optional[Fernet] = Fernet(settings.encryption_key.encode())
        except (ValueError, binascii.Error):
            log("the encryption key is not a Fernet key: API secrets cannot be checked")
            self.fernet = None

    # --- sessions

    def _session_user(self, conn, sid: str) -> Optional[str]:
        row = query_one(
            conn,
            "SELECT s.`user`, u.`enabled`, TIMESTAMPDIFF(SECOND, s.`lastupdate`, NOW(6)) AS age FROM `tabSessions` s "
            "LEFT JOIN `tabUser` u ON u.`name` = s.`user` WHERE s.`sid` = %s AND s.`lastupdate` > NOW(6) - INTERVAL %s SECOND "
            "AND (s.`status` IS NULL OR s.`status` = 'Active') ORDER BY s.`lastupdate` DESC LIMIT 1",
            (sid, self.expiry))
        if not row or not row["user"] or row["user"] == "Guest":
            return None
        if row["enabled"] != 1:
            raise FrappeError(401, "AuthenticationError", f"User {row['user']} is disabled")
        if row["age"] is not None and row["age"] > 600:  # Session.update: at most every 10 minutes
            query(conn, "UPDATE `tabSessions` SET `lastupdate` = NOW(6) WHERE `sid` = %s", (sid,))
        return row["user"]

    def _api_key_user(self, conn, key: str, secret: str) -> str:
        row = query_one(
            conn,
            "SELECT u.`name`, u.`enabled`, a.`password` FROM `tabUser` u LEFT JOIN `__Auth` a ON a.`doctype` = 'User' "
            "AND a.`name` = u.`name` AND a.`fieldname` = 'api_secret' AND a.`encrypted` = 1 WHERE u.`api_key` = %s",
            (key,))
        if not row or row["enabled"] != 1 or not row["password"] or self.fernet is None:
            raise FrappeError(401, "AuthenticationError")
        try:
            stored = self.fernet.decrypt(row["password"].encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise FrappeError(401, "AuthenticationError") from None
        if not secrets.compare_digest(stored.encode(), secret.encode()):
            raise FrappeError(401, "AuthenticationError")
        return row["name"]

    def _bearer_user(self, conn, token: str) -> Optional[str]:
        row = query_one(
            conn,
            "SELECT t.`user`, t.`status`, t.`expiration_time` > NOW(6) AS live, u.`enabled` FROM `tabOAuth Bearer Token` t "
            "LEFT JOIN `tabUser` u ON u.`name` = t.`user` WHERE t.`access_token` = %s",
            (token,))
        if not row or row["status"] == "Revoked" or row["live"] != 1 or not row["user"] or row["enabled"] != 1:
            return None
        return row["user"]

    @staticmethod
    def _user_info(conn, ident: Identity) -> Identity:
        row = query_one(conn, "SELECT `user_type`, `first_name`, `last_name`, `user_image` FROM `tabUser` WHERE `name` = %s",
                        (ident.user,))
        if row:
            ident.user_type = row["user_type"] or "System User"
            ident.full_name = full_name_of(row["first_name"], row["last_name"])
            ident.user_image = row["user_image"] or ""
        elif ident.user == "Administrator":
            ident.user_type, ident.full_name = "System User", "Administrator"
        return ident

    def _resume(self, conn, sid: Optional[str]) -> Identity:
        """LoginManager: the session of the sid cookie, or a Guest one."""
        if sid and sid != "Guest":
            user = self._session_user(conn, sid)
            if user:
                return self._user_info(conn, Identity(user=user, via="session", sid=sid))
            return Identity(session_expired=True)
        return Identity()

    def _authorize(self, conn, resumed: Identity, authorization: Optional[str]) -> Identity:
        """validate_auth: an Authorization header of exactly two space-separated parts may name
        the user (a bearer token always, a key:secret only without a live session); when it was
        there and the user is still Guest, AuthenticationError."""
        parts = authorization.split(" ") if authorization is not None else []
        if len(parts) != 2:
            return resumed
        ident = resumed
        kind, value = parts[0].lower(), parts[1]
        if kind == "bearer":
            user = self._bearer_user(conn, value)
            if user:
                ident = Identity(user=user, via="bearer")
        elif kind in ("token", "basic"):
            if kind == "basic":
                try:
                    value = base64.b64decode(value, validate=False).decode("utf-8")
                except binascii.Error:
                    raise FrappeError(400, "InvalidAuthorizationToken",
                                      "Failed to decode token, please provide a valid base64-encoded token.") from None
                except UnicodeDecodeError:  # a ValueError: ignored by validate_auth_via_api_keys
                    value = ""
            pieces = value.split(":")
            if len(pieces) == 2:  # else `api_key, api_secret = …` fails and is ignored
                if not pieces[0] or not pieces[1]:
                    raise FrappeError(401, "AuthenticationError")
                user = self._api_key_user(conn, pieces[0], pieces[1])
                if ident.is_guest:
                    ident = Identity(user=user, via="api_key")
        if ident.is_guest:
            raise FrappeError(401, "AuthenticationError")
        if ident is not resumed:
            self._user_info(conn, ident)
        return ident

    def _identify(self, conn, sid: Optional[str], authorization: Optional[str]):
        resumed = self._resume(conn, sid)
        try:
            return resumed, self._authorize(conn, resumed, authorization), None
        except FrappeError as e:
            return resumed, None, e

    async def identify(self, sid: Optional[str], authorization: Optional[str]) -> tuple[Identity, Optional[Identity], Optional[FrappeError]]:
        """(the resumed session, which sets the cookies; the request's identity, or the error
        validate_auth raised)."""
        return await self.db.run(self._identify, sid, authorization)

    # --- login and logout

    def _login(self, conn, usr: str, pwd: str, ip: str) -> Identity:
        row = None
        for column in ("name", "email", "username", "mobile_no"):
            row = query_one(conn, f"SELECT `name`, `enabled` FROM `tabUser` WHERE {quote_ident(column)} = %s LIMIT 1", (usr,))
            if row:
                break
        if not row or row["name"] == "Guest" or pwd != self.password:
            raise FrappeError(401, "AuthenticationError", "Invalid login credentials")
        if not (row["name"] == "Administrator" or row["enabled"] == 1):
            raise FrappeError(401, "AuthenticationError", "User disabled or missing")
        ident = self._user_info(conn, Identity(user=row["name"], via="session"))
        ident.sid = generate_hash(56)
        now = now_text()
        data = {"user": ident.user, "session_ip": ip, "last_updated": now, "session_expiry": expiry_text(self.expiry),
                "full_name": ident.full_name, "user_type": ident.user_type}
        query(conn, "INSERT INTO `tabSessions` (`sessiondata`, `user`, `lastupdate`, `sid`, `status`) "
                    "VALUES (%s, %s, NOW(6), %s, 'Active')", (str(data), ident.user, ident.sid))
        query(conn, "UPDATE `tabUser` SET `last_login` = %s, `last_ip` = %s, `last_active` = %s WHERE `name` = %s",
              (now, ip, now, ident.user))
        return ident

    async def login(self, usr: str, pwd: str, ip: str) -> Identity:
        return await self.db.run(self._login, usr, pwd, ip, retry=False)

    async def logout(self, sid: str) -> None:
        await self.db.run(lambda conn: query(conn, "DELETE FROM `tabSessions` WHERE `sid` = %s", (sid,)))

    # --- roles (frappe.permissions.get_roles)

    def _roles(self, conn, user: str) -> list[str]:
        if user == "Guest" or not user:
            return ["Guest"]
        if user == "Administrator":
            return [r[0] for r in query(conn, "SELECT `name` FROM `tabRole`")[1]]
        automatic = ("Guest", "All", "Desk User", "Administrator")
        roles = [r[0] for r in query(conn, "SELECT `role` FROM `tabHas Role` WHERE `parenttype` = 'User' AND `parent` = %s "
                                           "ORDER BY `idx`", (user,))[1] if r[0] not in automatic]
        roles += ["All", "Guest"]
        info = query_one(conn, "SELECT `user_type`, `enabled` FROM `tabUser` WHERE `name` = %s", (user,))
        if info and info["user_type"] == "System User" and info["enabled"] == 1:
            roles.append("Desk User")
        return roles

    async def roles(self, user: str) -> list[str]:
        return await self.db.run(self._roles, user)


# ---------------------------------------------------------------------------------------------
# Named queries: the directive format of proxy/origin/origin.hpp (struct Statement)


@dataclass
class Statement:
    name: str
    mode: str  # one | many | map | merge | list
    sql: str = ""  # with %s placeholders (other % doubled, for pymysql)
    params: list[str] = field(default_factory=list)
    required_doctype: str = ""
    required_param: str = ""


def _ident_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


def bind_names(sql: str) -> tuple[str, list[str]]:
    """:name → %s outside quotes and comments, names in order; comments dropped; trimmed of
    whitespace and the closing semicolon (as named_query.cpp's bind_names)."""
    out: list[str] = []
    names: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and c != "`":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if sql.startswith("--", i):
            eol = sql.find("\n", i)
            if eol < 0:
                break
            out.append("\n")
            i = eol + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                break
            out.append(" ")
            i = end + 2
            continue
        if c == ":" and i + 1 < n and _ident_char(sql[i + 1]) and (i == 0 or sql[i - 1] != ":"):
            j = i + 1
            while j < n and _ident_char(sql[j]):
                j += 1
            names.append(sql[i + 1:j])
            out.append("%s")
            i = j
            continue
        out.append("%%" if c == "%" else c)
        i += 1
    return "".join(out).strip().rstrip(";").strip(), names


RESULT_RE = re.compile(r"^\s*--\s+@result(\s|$)")


def parse_named_query(path: str, text: str) -> list[Statement]:
    statements: list[Statement] = []
    current: Optional[Statement] = None
    body: list[str] = []

    def fail(lineno: int, what: str) -> None:
        raise ValueError(f"{path}:{lineno}: {what}")

    def close() -> None:
        nonlocal current, body
        sql, names = bind_names("".join(body))
        if current is None:
            if sql:
                fail(1, 'SQL before the first "-- @result" line')
        else:
            if not sql:
                fail(0, "the @result has no statement after it")
            current.sql, current.params = sql, names
            statements.append(current)
        current, body = None, []

    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        words = line.split()
        if len(words) >= 2 and words[0] == "--" and words[1] == "@result":
            close()
            if len(words) < 4:
                fail(lineno, 'expected "-- @result <name> one|many|map" or "-- @result . list|merge"')
            name, mode = words[2], words[3]
            if mode not in ("one", "many", "map", "merge", "list"):
                fail(lineno, f"unknown mode {mode!r}")
            if (mode in ("merge", "list")) != (name == "."):
                fail(lineno, "list and merge take the name '.', the others a name")
            current = Statement(name, mode)
            if len(words) > 4:
                if words[4] != "required" or len(words) != 6 or mode != "one" or ":" not in words[5]:
                    fail(lineno, 'only "one" results can be "required <DocType>:<param>"')
                doctype, param = words[5].split(":", 1)
                current.required_doctype, current.required_param = doctype.replace("_", " "), param
            continue
        body.append(line)
    close()
    if not statements:
        fail(1, 'no "-- @result" statement in the file')
    if any(s.mode == "list" for s in statements) and len(statements) != 1:
        fail(1, 'a "list" result must be the file\'s only statement')
    return statements


@dataclass
class Param:
    name: str
    type: str = "string"  # string | date | int
    required: bool = False


@dataclass
class Method:
    path: str
    query: str
    params: list[Param]
    statements: list[Statement]


DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def load_methods(rules: dict, queries_dir: str) -> dict[str, Method]:
    """The rules whose origin is a named query, by path."""
    out: dict[str, Method] = {}
    for rule in rules.get("rules", []):
        name = (rule.get("origin") or {}).get("sql")
        if not name:
            continue
        path = os.path.join(queries_dir, name + ".sql")
        with open(path, encoding="utf-8") as f:
            statements = parse_named_query(path, f.read())
        params = [Param(k, v.get("type", "string"), bool(v.get("required"))) for k, v in (rule.get("params") or {}).items()]
        out[rule["path"]] = Method(rule["path"], name, params, statements)
    return out


def bind_params(method: Method, args: dict[str, Any]) -> dict[str, str]:
    """As pitstop's rules::bind_params: a missing or empty required parameter, a bad date or
    integer is a ValidationError (417)."""
    out: dict[str, str] = {}
    for p in method.params:
        v = args.get(p.name)
        v = "" if v is None else str(v)
        if not v:
            if p.required:
                raise validation(f"Missing required parameter: {p.name}")
            continue
        if p.type == "date":
            try:
                if not DATE_RE.match(v):
                    raise ValueError
                datetime.date.fromisoformat(v)
            except ValueError:
                raise validation(f"Parameter {p.name} must be a date YYYY-MM-DD") from None
        elif p.type == "int":
            try:
                v = str(int(v, 10))
            except ValueError:
                raise validation(f"Parameter {p.name} must be an integer") from None
        out[p.name] = v
    return out


def _run_statements(conn, statements: list[Statement], params: dict[str, str]) -> list[tuple[list[str], list[tuple]]]:
    snapshot = len(statements) > 1
    results = []
    with conn.cursor() as cur:
        if snapshot:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            for s in statements:
                cur.execute(s.sql, tuple(params.get(p, "") for p in s.params))
                cols = [d[0] for d in cur.description] if cur.description else []
                results.append((cols, list(cur.fetchall())))
        finally:
            if snapshot:
                cur.execute("COMMIT")
    return results


def render_named(statements: list[Statement], results: list, params: dict[str, str]) -> Any:
    """The message of a named query, by the directives' modes."""
    if len(statements) == 1 and statements[0].mode == "list":
        cols, rows = results[0]
        return [dict(zip(cols, r)) for r in rows]
    message: dict[str, Any] = {}
    for s, (cols, rows) in zip(statements, results):
        if s.mode == "one":
            if not rows and s.required_doctype:
                raise not_found(s.required_doctype, params.get(s.required_param, ""))
            message[s.name] = dict(zip(cols, rows[0])) if rows else None
        elif s.mode == "many":
            message[s.name] = [dict(zip(cols, r)) for r in rows]
        elif s.mode == "map":
            message[s.name] = {("null" if r[0] is None else str(r[0])): r[1] for r in rows} if len(cols) >= 2 else {}
        elif s.mode == "merge" and rows:
            message.update(zip(cols, rows[0]))
    return message


async def run_method(db: Database, method: Method, args: dict[str, Any]) -> Any:
    params = bind_params(method, args)
    results = await db.run(_run_statements, method.statements, params)
    return render_named(method.statements, results, params)


# ---------------------------------------------------------------------------------------------
# Documents (tab<DocType> tables, children as rules/workshop.json declares them)


STANDARD_READONLY = {"name", "creation", "owner", "modified", "modified_by", "doctype", "parent", "parenttype", "parentfield"}
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FIELD_RE = re.compile(r"^\s*(?:`?tab([^`.]+)`?\s*\.\s*)?`?([A-Za-z_][A-Za-z0-9_]*|\*)`?(?:\s+as\s+`?([A-Za-z_][A-Za-z0-9_]*)`?)?\s*$",
                      re.IGNORECASE)
ORDER_RE = re.compile(r"^\s*(?:`?tab([^`.]+)`?\s*\.\s*)?`?([A-Za-z_][A-Za-z0-9_]*)`?(?:\s+(asc|desc))?\s*$", re.IGNORECASE)
OPERATORS = {"=", "!=", "<>", "<", ">", "<=", ">=", "like", "not like", "in", "not in", "is", "between"}


def label_of(fieldname: str) -> str:
    return " ".join(w.capitalize() for w in fieldname.split("_"))


def series_key(pattern: str) -> tuple[str, int]:
    """"SO-.YYYY.-.#####" → ("SO-2026-", 5), like frappe.model.naming.parse_naming_series (UTC dates,
    as pitstop's own writes)."""
    today = datetime.datetime.now(datetime.timezone.utc)
    key, digits = "", 0
    for part in pattern.split("."):
        if part and set(part) == {"#"}:
            digits = len(part)
        elif part == "YYYY":
            key += f"{today.year:04d}"
        elif part == "YY":
            key += f"{today.year % 100:02d}"
        elif part == "MM":
            key += f"{today.month:02d}"
        elif part == "DD":
            key += f"{today.day:02d}"
        else:
            key += part
    return key, digits or 5


class Documents:
    def __init__(self, db: Database, rules: dict):
        self.db = db
        self.doctypes: dict[str, dict] = rules.get("doctypes", {})
        self._columns: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    # --- metadata

    def columns(self, conn, doctype: str) -> list[str]:
        with self._lock:
            cached = self._columns.get(doctype)
        if cached is not None:
            return cached
        cols = [r[0] for r in query(conn, "SELECT `COLUMN_NAME` FROM information_schema.`COLUMNS` WHERE `TABLE_SCHEMA` = DATABASE() "
                                          "AND `TABLE_NAME` = %s ORDER BY `ORDINAL_POSITION`", ("tab" + doctype,))[1]]
        if not cols:
            raise FrappeError(404, "DoesNotExistError", f"DocType {doctype} not found")
        with self._lock:
            self._columns[doctype] = cols
        return cols

    def children(self, doctype: str) -> dict[str, str]:
        return dict((self.doctypes.get(doctype) or {}).get("children") or {})

    def parent_of(self, doctype: str) -> Optional[str]:
        return (self.doctypes.get(doctype) or {}).get("parent")

    def is_child(self, doctype: str) -> bool:
        return self.parent_of(doctype) is not None

    # --- reads

    def _load(self, conn, doctype: str, name: str, for_update: bool = False) -> Optional[dict]:
        self.columns(conn, doctype)
        return query_one(conn, f"SELECT * FROM {quote_ident('tab' + doctype)} WHERE `name` = %s" + (" FOR UPDATE" if for_update else ""),
                         (name,))

    def _child_rows(self, conn, doctype: str, name: str, fieldname: str, child: str) -> list[dict]:
        self.columns(conn, child)
        cols, rows = query(conn, f"SELECT * FROM {quote_ident('tab' + child)} WHERE `parent` = %s AND `parenttype` = %s "
                                 "AND `parentfield` = %s ORDER BY `idx`", (name, doctype, fieldname))
        return [dict(zip(cols, r)) for r in rows]

    def _as_dict(self, conn, doctype: str, row: dict) -> dict:
        """Document.as_dict(no_nulls=True): NULL fields left out, child tables as lists."""
        doc = {k: v for k, v in row.items() if v is not None}
        doc["doctype"] = doctype
        for fieldname, child in self.children(doctype).items():
            doc[fieldname] = [dict({k: v for k, v in r.items() if v is not None}, doctype=child)
                              for r in self._child_rows(conn, doctype, row["name"], fieldname, child)]
        return doc

    def _get(self, conn, doctype: str, name: str) -> dict:
        row = self._load(conn, doctype, name)
        if row is None:
            raise not_found(doctype, name)
        return self._as_dict(conn, doctype, row)

    async def get(self, doctype: str, name: str) -> dict:
        return await self.db.run(self._get, doctype, name)

    def _list(self, conn, doctype: str, args: dict) -> list:
        cols = self.columns(conn, doctype)
        table = quote_ident("tab" + doctype)
        select = self._fields(doctype, cols, args.get("fields"))
        values: list[Any] = []
        where = self._conditions(doctype, cols, args.get("filters"), values, " AND ")
        or_where = self._conditions(doctype, cols, args.get("or_filters"), values, " OR ")
        clauses = [c for c in (where, f"({or_where})" if or_where else "") if c]
        sql = f"SELECT {', '.join(select)} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY " + self._order(doctype, cols, args.get("order_by"))
        limit = _int_arg(args.get("limit_page_length", args.get("limit")), 20)
        start = _int_arg(args.get("limit_start", args.get("start")), 0)
        if limit > 0:
            sql += f" LIMIT {limit} OFFSET {start}"
        elif start > 0:
            sql += f" LIMIT 18446744073709551615 OFFSET {start}"
        names, rows = query(conn, sql, tuple(values))
        if str(args.get("as_dict", "1")).lower() in ("0", "false"):
            return [list(r) for r in rows]
        return [dict(zip(names, r)) for r in rows]

    async def list(self, doctype: str, args: dict) -> list:
        return await self.db.run(self._list, doctype, args)

    @staticmethod
    def _column(doctype: str, cols: list[str], name: str, table: Optional[str] = None) -> str:
        if (table is not None and table != doctype) or name not in cols:
            raise FrappeError(417, "DataError", f"Field not permitted in query: {name}")
        return quote_ident(name)

    def _fields(self, doctype: str, cols: list[str], fields: Any) -> list[str]:
        fields = _json_arg(fields, ["name"])
        if isinstance(fields, str):
            fields = [f for f in fields.split(",") if f.strip()]
        if not isinstance(fields, list) or not fields:
            fields = ["name"]
        out = []
        for f in fields:
            m = FIELD_RE.match(str(f))
            if not m:
                raise FrappeError(417, "DataError", f"Field not permitted in query: {f}")
            table, name, alias = m.groups()
            if name == "*":
                out += [quote_ident(c) for c in cols]
                continue
            col = self._column(doctype, cols, name, table)
            out.append(f"{col} AS {quote_ident(alias)}" if alias else col)
        return out

    def _conditions(self, doctype: str, cols: list[str], filters: Any, values: list, joiner: str) -> str:
        filters = _json_arg(filters, None)
        if not filters:
            return ""
        items: list[tuple[str, str, Any]] = []
        if isinstance(filters, dict):
            for k, v in filters.items():
                if isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) and v[0].lower() in OPERATORS:
                    items.append((k, v[0], v[1]))
                else:
                    items.append((k, "=", v))
        elif isinstance(filters, list):
            for f in filters:
                if isinstance(f, (list, tuple)) and len(f) == 4:
                    if f[0] != doctype:
                        raise FrappeError(417, "DataError", f"Filter on another doctype: {f[0]}")
                    f = f[1:]
                if not isinstance(f, (list, tuple)) or len(f) not in (2, 3):
                    raise FrappeError(417, "DataError", f"Invalid filter: {f!r}")
                items.append((f[0], "=", f[1]) if len(f) == 2 else (f[0], f[1], f[2]))
        else:
            raise FrappeError(417, "DataError", "filters must be a list or an object")
        parts = []
        for fieldname, op, value in items:
            col = self._column(doctype, cols, str(fieldname))
            op = str(op).lower().strip()
            if op not in OPERATORS:
                raise FrappeError(417, "DataError", f"Unsupported operator: {op}")
            if op in ("in", "not in"):
                seq = value.split(",") if isinstance(value, str) else list(value or [])
                seq = [s.strip() if isinstance(s, str) else s for s in seq]
                if not seq:
                    parts.append("1=0" if op == "in" else "1=1")
                    continue
                parts.append(f"{col} {op.upper()} ({', '.join(['%s'] * len(seq))})")
                values.extend(seq)
            elif op == "is":
                parts.append(f"({col} IS NOT NULL AND {col} != '')" if str(value).lower() == "set"
                             else f"({col} IS NULL OR {col} = '')")
            elif op == "between":
                lo, hi = list(value)[:2]
                parts.append(f"{col} BETWEEN %s AND %s")
                values.extend([lo, hi])
            else:
                parts.append(f"{col} {'!=' if op == '<>' else op.upper()} %s")
                values.append(value)
        return joiner.join(parts)

    def _order(self, doctype: str, cols: list[str], order_by: Any) -> str:
        if not order_by:
            return f"{quote_ident('tab' + doctype)}.`modified` DESC" if "modified" in cols else "`name`"
        out = []
        for piece in str(order_by).split(","):
            m = ORDER_RE.match(piece)
            if not m:
                raise FrappeError(417, "DataError", f"Invalid order_by: {order_by}")
            table, name, direction = m.groups()
            out.append(f"{self._column(doctype, cols, name, table)} {(direction or 'asc').upper()}")
        return ", ".join(out)

    # --- writes

    def _check_mandatory(self, doctype: str, row: dict, name: str) -> None:
        missing = [f for f in (self.doctypes.get(doctype) or {}).get("mandatory", []) if row.get(f) in (None, "")]
        if missing:
            messages = [f"Error: Value missing for {doctype}: {label_of(f)}" for f in missing]
            raise MandatoryError(f"[{doctype}, {name}]: {', '.join(missing)}", messages)

    def _check_links(self, conn, doctype: str, row: dict, only: Optional[set] = None) -> None:
        for fieldname, target in ((self.doctypes.get(doctype) or {}).get("links") or {}).items():
            value = row.get(fieldname)
            if value in (None, "") or (only is not None and fieldname not in only):
                continue
            self.columns(conn, target)
            if not query(conn, f"SELECT 1 FROM {quote_ident('tab' + target)} WHERE `name` = %s", (value,))[1]:
                raise validation(f"Could not find {label_of(fieldname)}: {value}", "LinkValidationError")

    def _name_for(self, conn, doctype: str, data: dict) -> str:
        given = data.get("name")
        if isinstance(given, str) and given.strip():
            return given.strip()
        naming = (self.doctypes.get(doctype) or {}).get("naming", "hash")
        kind, _, value = naming.partition(":")
        if kind == "field":
            name = str(data.get(value) or "").strip()
            if not name:
                raise validation(f"{label_of(value)} is required")
            return name
        if kind == "series":
            key, digits = series_key(value)
            row = query_one(conn, "SELECT `current` FROM `tabSeries` WHERE `name` = %s FOR UPDATE", (key,))
            if row and row["current"] is not None:
                current = int(row["current"]) + 1
                query(conn, "UPDATE `tabSeries` SET `current` = `current` + 1 WHERE `name` = %s", (key,))
            else:
                current = 1
                query(conn, "INSERT INTO `tabSeries` (`name`, `current`) VALUES (%s, 1)", (key,))
            return key + str(current).zfill(digits)
        return generate_hash(10)

    def _revert_series_if_last(self, conn, doctype: str, name: str) -> None:
        """delete_doc's update_naming_series: the series steps back when its last name goes."""
        kind, _, pattern = (self.doctypes.get(doctype) or {}).get("naming", "").partition(":")
        if kind != "series":
            return
        key, digits = series_key(pattern)
        if not name.startswith(key) or not name[len(key):].isdigit():
            return
        row = query_one(conn, "SELECT `current` FROM `tabSeries` WHERE `name` = %s FOR UPDATE", (key,))
        if row and row["current"] == int(name[len(key):]):
            query(conn, "UPDATE `tabSeries` SET `current` = `current` - 1 WHERE `name` = %s", (key,))

    @staticmethod
    def _db_value(v: Any) -> Any:
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        return v

    def _insert_row(self, conn, doctype: str, row: dict) -> None:
        cols = self.columns(conn, doctype)
        keys = [k for k in row if k in cols]
        query(conn, f"INSERT INTO {quote_ident('tab' + doctype)} ({', '.join(quote_ident(k) for k in keys)}) "
                    f"VALUES ({', '.join(['%s'] * len(keys))})", tuple(self._db_value(row[k]) for k in keys))

    def _write_children(self, conn, doctype: str, name: str, data: dict, user: str, now: str, docstatus: int,
                        replace: bool) -> None:
        for fieldname, child in self.children(doctype).items():
            if fieldname not in data:
                continue
            rows = data[fieldname] or []
            if not isinstance(rows, list):
                raise validation(f"{label_of(fieldname)} must be a list of rows")
            ccols = self.columns(conn, child)
            existing = {r["name"]: r for r in self._child_rows(conn, doctype, name, fieldname, child)} if replace else {}
            kept = set()
            for idx, given in enumerate(rows, 1):
                if not isinstance(given, dict):
                    raise validation(f"{label_of(fieldname)} row {idx} is not an object")
                self._check_mandatory(child, given, name)
                self._check_links(conn, child, given)
                values = {k: v for k, v in given.items() if k in ccols and k not in STANDARD_READONLY and k != "idx"}
                cname = given.get("name")
                if isinstance(cname, str) and cname in existing:
                    kept.add(cname)
                    values.update(idx=idx, modified=now, modified_by=user, docstatus=docstatus)
                    query(conn, f"UPDATE {quote_ident('tab' + child)} SET {', '.join(quote_ident(k) + ' = %s' for k in values)} "
                                "WHERE `name` = %s", tuple(self._db_value(v) for v in values.values()) + (cname,))
                    continue
                values.update(name=cname if isinstance(cname, str) and cname else generate_hash(10), parent=name,
                              parenttype=doctype, parentfield=fieldname, idx=idx, owner=user, creation=now, modified=now,
                              modified_by=user, docstatus=docstatus)
                self._insert_row(conn, child, values)
            gone = [n for n in existing if n not in kept]
            if gone:
                query(conn, f"DELETE FROM {quote_ident('tab' + child)} WHERE `name` IN ({', '.join(['%s'] * len(gone))})",
                      tuple(gone))

    def _insert(self, conn, doctype: str, data: dict, user: str) -> tuple[dict, list[Event]]:
        cols = self.columns(conn, doctype)
        data = dict(data)
        data.pop("doctype", None)
        now = now_text()
        with Transaction(conn):
            name = self._name_for(conn, doctype, data)
            row = {k: v for k, v in data.items() if k in cols and k not in STANDARD_READONLY and k not in self.children(doctype)}
            self._check_mandatory(doctype, row, name)
            self._check_links(conn, doctype, row)
            docstatus = int(row.get("docstatus") or 0)
            if docstatus not in (0, 1) or (docstatus == 1 and not self._submittable(doctype)):
                raise validation("Cannot set docstatus to " + str(docstatus), "DocstatusTransitionError")
            row.update(name=name, owner=user, creation=now, modified=now, modified_by=user, docstatus=docstatus)
            row.setdefault("idx", 0)
            try:
                self._insert_row(conn, doctype, row)
            except pymysql.err.IntegrityError as e:
                if e.args and e.args[0] == 1062:
                    raise FrappeError(409, "DuplicateEntryError", f"{doctype} <strong>{name}</strong> already exists",
                                      "Duplicate Name") from None
                raise FrappeError(417, "DataError", str(e.args[1] if len(e.args) > 1 else e)) from None
            self._write_children(conn, doctype, name, data, user, now, docstatus, replace=False)
            doc = self._as_dict(conn, doctype, self._load(conn, doctype, name))
        return doc, self.events(doctype, name, now, user)

    async def insert(self, doctype: str, data: dict, user: str) -> tuple[dict, list[Event]]:
        return await self.db.run(self._insert, doctype, data, user, retry=False)

    def _submittable(self, doctype: str) -> bool:
        return bool((self.doctypes.get(doctype) or {}).get("is_submittable"))

    def _check_submitted(self, doctype: str, stored: dict, changes: dict, new_status: int) -> None:
        old = int(stored.get("docstatus") or 0)
        if old == 2:
            raise validation("Cannot edit cancelled document", "DocstatusTransitionError")
        allowed = {(0, 0), (0, 1), (1, 1), (1, 2)} if self._submittable(doctype) else {(0, 0)}
        if (old, new_status) not in allowed:
            raise validation(f"Cannot change docstatus from {old} to {new_status}", "DocstatusTransitionError")
        if old == 1 and new_status == 1:
            may = set((self.doctypes.get(doctype) or {}).get("allow_on_submit") or [])
            for k, v in changes.items():
                if k not in may and k != "docstatus" and str(stored.get(k) if stored.get(k) is not None else "") != str(v if v is not None else ""):
                    raise validation(f"Not allowed to change {label_of(k)} after submission", "UpdateAfterSubmitError")

    def _update(self, conn, doctype: str, name: str, data: dict, user: str) -> tuple[dict, list[Event]]:
        cols = self.columns(conn, doctype)
        data = {k: v for k, v in dict(data).items() if k != "flags"}
        now = now_text()
        events: list[Event] = []
        with Transaction(conn):
            stored = self._load(conn, doctype, name, for_update=True)
            if stored is None:
                raise not_found(doctype, name)
            if "modified" in data and data["modified"] not in (None, "") and str(data["modified"]) != str(stored["modified"]):
                raise validation("Error: Document has been modified after you have opened it "
                                 f"({data['modified']}, {stored['modified']}). Please refresh to get the latest document.",
                                 "TimestampMismatchError")
            changes = {k: v for k, v in data.items() if k in cols and k not in STANDARD_READONLY and k not in self.children(doctype)}
            new_status = int(changes.get("docstatus", stored.get("docstatus") or 0) or 0)
            self._check_submitted(doctype, stored, changes, new_status)
            merged = dict(stored, **changes)
            self._check_mandatory(doctype, merged, name)
            self._check_links(conn, doctype, merged, only=set(changes))
            changes.update(modified=now, modified_by=user, docstatus=new_status)
            query(conn, f"UPDATE {quote_ident('tab' + doctype)} SET {', '.join(quote_ident(k) + ' = %s' for k in changes)} "
                        "WHERE `name` = %s", tuple(self._db_value(v) for v in changes.values()) + (name,))
            self._write_children(conn, doctype, name, data, user, now, new_status, replace=True)
            events += self.events(doctype, name, now, user)
            parent = self.parent_of(doctype)
            if parent and stored.get("parent"):  # a child row saved alone saves its parent too
                query(conn, f"UPDATE {quote_ident('tab' + parent)} SET `modified` = %s, `modified_by` = %s WHERE `name` = %s",
                      (now, user, stored["parent"]))
                events += self.events(parent, stored["parent"], now, user)
            doc = self._as_dict(conn, doctype, self._load(conn, doctype, name))
        return doc, events

    async def update(self, doctype: str, name: str, data: dict, user: str) -> tuple[dict, list[Event]]:
        return await self.db.run(self._update, doctype, name, data, user, retry=False)

    def _delete(self, conn, doctype: str, name: str, user: str) -> list[Event]:
        self.columns(conn, doctype)
        with Transaction(conn):
            stored = self._load(conn, doctype, name, for_update=True)
            if stored is None:
                raise not_found(doctype, name)
            if int(stored.get("docstatus") or 0) == 1:
                raise validation(f"{doctype} {name}: Submitted Record cannot be deleted. You must Cancel it first.")
            for fieldname, child in self.children(doctype).items():
                self.columns(conn, child)
                query(conn, f"DELETE FROM {quote_ident('tab' + child)} WHERE `parent` = %s AND `parenttype` = %s "
                            "AND `parentfield` = %s", (name, doctype, fieldname))
            query(conn, f"DELETE FROM {quote_ident('tab' + doctype)} WHERE `name` = %s", (name,))
            self._revert_series_if_last(conn, doctype, name)
        # Document.notify_update after delete_doc: the stored modified, as json_handler writes it
        modified = stored.get("modified")
        return self.events(doctype, name, str(modified) if modified is not None else None, user)

    async def delete(self, doctype: str, name: str, user: str) -> list[Event]:
        return await self.db.run(self._delete, doctype, name, user, retry=False)

    def events(self, doctype: str, name: str, modified: Optional[str], user: str) -> list[Event]:
        """Document.notify_update: doc_update to the document's room, and list_update to the
        doctype's for doctypes that are not child tables."""
        out = [Event("doc_update", {"modified": modified, "doctype": doctype, "name": name}, f"doc:{doctype}/{name}")]
        if not self.is_child(doctype):
            out.append(Event("list_update", {"doctype": doctype, "name": name, "user": user}, f"doctype:{doctype}"))
        return out


class MandatoryError(FrappeError):
    """Document._validate_mandatory: a msgprint per missing field, then the exception."""

    def __init__(self, message: str, server_messages: list[str]):
        super().__init__(417, "MandatoryError", message, server_messages=server_messages)


def _json_arg(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("[", "{", '"'):
            try:
                return json.loads(text)
            except ValueError:
                raise FrappeError(417, "DataError", f"Invalid JSON: {text[:80]}") from None
    return value


def _int_arg(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        raise FrappeError(417, "DataError", f"Not an integer: {value!r}") from None


# ---------------------------------------------------------------------------------------------
# Realtime: frappe.realtime.emit_via_redis


@dataclass
class Event:
    event: str
    message: dict
    room: str


def realtime_payload(event: Event, site: str) -> str:
    """The JSON Frappe publishes on the `events` channel: frappe.as_json (indent 1, sorted keys)
    of {event, message, room, namespace}."""
    return json.dumps({"event": event.event, "message": event.message, "room": event.room, "namespace": site},
                      indent=1, sort_keys=True, default=json_default, separators=(",", ": "))


class RedisPublisher:
    """PUBLISH over one RESP connection (reconnected when it breaks); failures are logged and
    dropped, as Frappe suppresses redis ConnectionError."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.password = unquote(u.password) if u.password else None
        self.username = unquote(u.username) if u.username else None
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.lock = asyncio.Lock()
        self.published = 0

    @staticmethod
    def _command(*args: str) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    async def _call(self, *args: str) -> bytes:
        assert self.writer and self.reader
        self.writer.write(self._command(*args))
        await self.writer.drain()
        line = await asyncio.wait_for(self.reader.readline(), 2)
        if not line:
            raise ConnectionError("redis closed the connection")
        if line.startswith(b"-"):
            raise RuntimeError(line[1:].strip().decode(errors="replace"))
        return line

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 2)
        if self.password:
            await self._call(*(["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]))

    def _drop(self) -> None:
        if self.writer:
            self.writer.close()
        self.reader = self.writer = None

    async def publish(self, channel: str, message: str) -> None:
        async with self.lock:
            for attempt in (0, 1):
                try:
                    if self.writer is None:
                        await self._connect()
                    await self._call("PUBLISH", channel, message)
                    self.published += 1
                    return
                except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                    self._drop()
                    if attempt == 1:
                        log(f"PUBLISH to redis {self.host}:{self.port} failed: {e}")
                except RuntimeError as e:
                    log(f"PUBLISH refused by redis: {e}")
                    return

    async def close(self) -> None:
        self._drop()
