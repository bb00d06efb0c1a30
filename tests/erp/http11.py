"""HTTP/1.1 and RFC 6455 websockets on asyncio, written by hand for the Frappe stand-in.

http.server cannot take chunked request bodies, answer `Expect: 100-continue` or hand a
connection over to a websocket; this module does all three, streams bodies both ways (a request
body is read a chunk at a time, an answer may be an async iterator of chunks), keeps connections
alive, answers pipelined requests in order, and answers HEAD without a body.

The application is one coroutine, `handler(request) -> Response | None`; None means the
handler kept the connection for itself (it is closed afterwards).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import struct
import sys
import time
import traceback
from email.utils import formatdate
from typing import AsyncIterator, Awaitable, Callable, Optional
from urllib.parse import parse_qsl, unquote

MAX_HEAD_BYTES = 64 * 1024  # request line and headers
CHUNK = 64 * 1024  # read and write granularity of bodies
WS_MAX_MESSAGE = 16 * 1024 * 1024

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 413: "Content Too Large",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request that cannot be served as HTTP: answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(message or REASONS.get(status, "Error"))
        self.status = status


def http_date(ts: Optional[float] = None) -> str:
    return formatdate(time.time() if ts is None else ts, usegmt=True)


# ---------------------------------------------------------------------------------------------
# Requests


class Connection:
    """One accepted TCP connection; `requests` counts the requests read on it so far."""

    _ids = itertools.count(1)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: str):
        self.id = next(Connection._ids)
        self.reader = reader
        self.writer = writer
        self.listener = listener
        self.requests = 0
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if peer else "127.0.0.1"


class Body:
    """A request body read on demand: Content-Length or chunked (trailers read and dropped).

    `100 Continue` is sent before the first read when the client asked for it, so a request
    answered without reading its body (a refusal) never makes the client send it."""

    def __init__(self, conn: Connection, length: Optional[int], chunked: bool, expect_continue: bool, limit: int):
        self._reader = conn.reader
        self._writer = conn.writer
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.limit = limit
        self.received = 0
        self._left = length or 0  # Content-Length left, or the current chunk's
        self.done = not chunked and not length

    async def _continue(self) -> None:
        if self.expect_continue and not self.continue_sent:
            self.continue_sent = True
            self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self._writer.drain()

    async def read(self, n: int = CHUNK) -> bytes:
        """Up to n bytes of the body; b"" at its end."""
        if self.done:
            return b""
        await self._continue()
        if self.chunked and self._left == 0:
            await self._next_chunk()
            if self.done:
                return b""
        data = await self._reader.read(min(n, self._left))
        if not data:
            raise HttpError(400, "the connection closed inside the request body")
        self._left -= len(data)
        self.received += len(data)
        if self.received > self.limit:
            raise HttpError(413, f"the request body is larger than {self.limit} bytes")
        if self._left == 0:
            if self.chunked:
                if await self._reader.readexactly(2) != b"\r\n":
                    raise HttpError(400, "a chunk does not end with CRLF")
            else:
                self.done = True
        return data

    async def _next_chunk(self) -> None:
        line = await self._line()
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, "bad chunk size") from None
        if size < 0:
            raise HttpError(400, "bad chunk size")
        if size == 0:
            while await self._line():  # trailer fields, ignored
                pass
            self.done = True
        self._left = size

    async def _line(self) -> bytes:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise HttpError(400, "a chunk line is too long") from None
        except asyncio.IncompleteReadError:
            raise HttpError(400, "the connection closed inside the request body") from None
        return line.rstrip(b"\r\n")

    async def read_all(self, cap: int) -> bytes:
        parts, size = [], 0
        while True:
            data = await self.read()
            if not data:
                return b"".join(parts)
            size += len(data)
            if size > cap:
                raise HttpError(413, f"the request body is larger than {cap} bytes")
            parts.append(data)

    async def discard(self) -> None:
        while await self.read():
            pass


class Request:
    def __init__(self, conn: Connection, method: str, target: str, version: str, headers: list[tuple[str, str]]):
        self.conn = conn
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # in received order, names as sent
        raw_path, _, self.query = target.partition("?")
        if raw_path.startswith("http://") or raw_path.startswith("https://"):
            raw_path = "/" + raw_path.split("/", 3)[3] if raw_path.count("/") >= 3 else "/"
        self.path = unquote(raw_path)
        self.args: list[tuple[str, str]] = parse_qsl(self.query, keep_blank_values=True)
        self.body: Body = None  # type: ignore[assignment]
        self.declared_length: Optional[int] = None  # Content-Length, when the body has one

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def arg(self, name: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.args:
            if k == name:
                return v
        return default

    def arg_all(self, name: str) -> list[str]:
        return [v for k, v in self.args if k == name]

    def connection_tokens(self) -> set[str]:
        return {t.strip().lower() for v in self.header_all("Connection") for t in v.split(",")}

    @property
    def keep_alive(self) -> bool:
        tokens = self.connection_tokens()
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def parse_head(conn: Connection, head: bytes, body_limit: int) -> Request:
    lines = head.split(b"\n")
    while lines and not lines[0].strip():  # stray CRLFs between pipelined requests
        lines.pop(0)
    if not lines:
        raise HttpError(400, "empty request")
    try:
        request_line = lines[0].rstrip(b"\r").decode("ascii")
        method, target, version = request_line.split(" ")
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "malformed request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505 if version.startswith("HTTP/") else 400)
    if not method.isalpha() or not target:
        raise HttpError(400, "malformed request line")
    headers = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete line folding")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header field")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    req = Request(conn, method, target, version, headers)

    te = [t.strip().lower() for v in req.header_all("Transfer-Encoding") for t in v.split(",") if t.strip()]
    chunked = False
    length: Optional[int] = None
    if te:
        if te[-1] != "chunked" or any(t not in ("chunked", "identity") for t in te):
            raise HttpError(501, "unsupported transfer coding")
        chunked = True
    else:
        lengths = {v.strip() for v in req.header_all("Content-Length")}
        if len(lengths) > 1:
            raise HttpError(400, "conflicting Content-Length")
        if lengths:
            text = lengths.pop()
            if not text.isdigit():
                raise HttpError(400, "bad Content-Length")
            length = int(text)
    expect = (req.header("Expect") or "").strip().lower()
    req.body = Body(conn, length, chunked, expect == "100-continue" and version == "HTTP/1.1", body_limit)
    req.declared_length = length
    return req


# ---------------------------------------------------------------------------------------------
# Responses


Upgrade = Callable[[Connection], Awaitable[None]]


class Response:
    """An answer: `body` bytes, or `stream` (an async iterator of chunks) of `length` bytes
    (None or `chunked` sends it chunked). `upgrade` takes the connection over after a 101."""

    def __init__(self, status: int = 200, body: bytes = b"", content_type: Optional[str] = None,
                 headers: Optional[list[tuple[str, str]]] = None, stream: Optional[AsyncIterator[bytes]] = None,
                 length: Optional[int] = None, chunked: bool = False, upgrade: Optional[Upgrade] = None):
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = list(headers or [])
        if content_type:
            self.headers.insert(0, ("Content-Type", content_type))
        self.stream = stream
        self.length = length
        self.chunked = chunked
        self.upgrade = upgrade
        self.close = False

    def add(self, name: str, value: str) -> "Response":
        self.headers.append((name, value))
        return self

    def has(self, name: str) -> bool:
        low = name.lower()
        return any(k.lower() == low for k, _ in self.headers)


def _clean(v: str) -> str:
    return v.replace("\r", " ").replace("\n", " ")


async def write_response(writer: asyncio.StreamWriter, req: Optional[Request], resp: Response, keep_alive: bool) -> None:
    status = resp.status
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    if not resp.has("Date"):
        head.append(f"Date: {http_date()}")
    if not resp.has("Server"):
        head.append("Server: frappe-standin")
    head += [f"{_clean(k)}: {_clean(v)}" for k, v in resp.headers]
    bodiless = status < 200 or status in (204, 304)
    chunked = False
    if not bodiless:
        if resp.stream is not None and (resp.chunked or resp.length is None):
            chunked = True
            head.append("Transfer-Encoding: chunked")
        else:
            head.append(f"Content-Length: {resp.length if resp.stream is not None else len(resp.body)}")
    if status == 101:
        head.append("Connection: Upgrade")
    elif not keep_alive:
        head.append("Connection: close")
    elif req is not None and req.version == "HTTP/1.0":
        head.append("Connection: keep-alive")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if bodiless or (req is not None and req.method == "HEAD"):
        await writer.drain()
        return
    if resp.stream is None:
        if resp.body:
            writer.write(resp.body)
        await writer.drain()
        return
    async for piece in resp.stream:
        if not piece:
            continue
        if chunked:
            writer.write(b"%x\r\n" % len(piece))
            writer.write(piece)
            writer.write(b"\r\n")
        else:
            writer.write(piece)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


def plain(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


# ---------------------------------------------------------------------------------------------
# The connection loop


Handler = Callable[[Request], Awaitable[Optional[Response]]]


class Server:
    """Serves `handler` on connections; `observer` (optional) hears opened/closed connections
    and may refuse one (`accept(conn)` returning False closes it at once)."""

    def __init__(self, handler: Handler, name: str, body_limit: int, observer=None):
        self.handler = handler
        self.name = name
        self.body_limit = body_limit
        self.observer = observer
        self.tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._accept, host, port, limit=MAX_HEAD_BYTES, backlog=4096, reuse_address=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self.tasks.add(task)
        conn = Connection(reader, writer, self.name)
        try:
            if self.observer and not self.observer.accept(conn):
                return
            await self._serve(conn)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:  # a bug: say so, and drop the connection
            traceback.print_exc(file=sys.stderr)
        finally:
            if self.observer:
                self.observer.closed(conn)
            if task:
                self.tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _serve(self, conn: Connection) -> None:
        while True:
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # closed between requests (or inside a head: nothing to answer)
            except asyncio.LimitOverrunError:
                await write_response(conn.writer, None, plain(431, "request head too large"), False)
                return
            conn.requests += 1
            try:
                req = parse_head(conn, head, self.body_limit)
                if req.declared_length is not None and req.declared_length > self.body_limit:
                    raise HttpError(413, f"the request body is larger than {self.body_limit} bytes")
            except HttpError as e:
                await write_response(conn.writer, None, plain(e.status, str(e)), False)
                return
            try:
                resp = await self.handler(req)
            except HttpError as e:
                resp = plain(e.status, str(e))
                resp.close = True
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                raise
            except Exception as e:  # a bug in the handler: a 500, and the connection closed
                traceback.print_exc(file=sys.stderr)
                resp = plain(500, f"{type(e).__name__}: {e}")
                resp.close = True
            if resp is None:
                return  # the handler kept the connection (a hang)
            keep_alive = req.keep_alive and not resp.close
            if not req.body.done and keep_alive:
                # An unread body: a client that waits for 100 Continue will not send it (close),
                # one that sends it anyway is read to its end so the next request can follow.
                if req.body.expect_continue and not req.body.continue_sent:
                    keep_alive = False
            await write_response(conn.writer, req, resp, keep_alive)
            if resp.upgrade is not None and resp.status == 101:
                await resp.upgrade(conn)
                return
            if not keep_alive:
                return
            if not req.body.done:
                try:
                    await req.body.discard()
                except HttpError:
                    return


# ---------------------------------------------------------------------------------------------
# Websockets (RFC 6455)


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + WS_GUID).digest()).decode()


def is_websocket_upgrade(req: Request) -> bool:
    upgrade = {t.strip().lower() for v in req.header_all("Upgrade") for t in v.split(",")}
    return req.method == "GET" and "websocket" in upgrade and "upgrade" in req.connection_tokens() \
        and bool(req.header("Sec-WebSocket-Key"))


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame: never masked."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


async def ws_read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    b0, b1 = await reader.readexactly(2)
    fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > WS_MAX_MESSAGE:
        raise ValueError("frame too large")
    mask = await reader.readexactly(4) if masked else b""
    payload = await reader.readexactly(n)
    return fin, opcode, _unmask(payload, mask) if masked else payload


async def websocket_echo(conn: Connection, on_message: Callable[[int, bytes], None]) -> None:
    """Echoes every text/binary message (fragments reassembled) as one unmasked frame, answers
    pings with pongs and a close with a close."""
    reader, writer = conn.reader, conn.writer
    message_op, parts, size = 0, [], 0
    while True:
        try:
            fin, opcode, payload = await ws_read_frame(reader)
        except ValueError:
            writer.write(ws_frame(0x8, struct.pack("!H", 1009)))
            await writer.drain()
            return
        if opcode == 0x8:  # close: answer with the same status code
            writer.write(ws_frame(0x8, payload[:2]))
            await writer.drain()
            return
        if opcode == 0x9:  # ping
            writer.write(ws_frame(0xA, payload))
            await writer.drain()
            continue
        if opcode == 0xA:  # pong
            continue
        if opcode in (0x1, 0x2):
            message_op, parts, size = opcode, [], 0
        elif opcode != 0x0 or not message_op:
            writer.write(ws_frame(0x8, struct.pack("!H", 1002)))
            await writer.drain()
            return
        parts.append(payload)
        size += len(payload)
        if size > WS_MAX_MESSAGE:
            writer.write(ws_frame(0x8, struct.pack("!H", 1009)))
            await writer.drain()
            return
        if fin:
            message = b"".join(parts)
            on_message(message_op, message)
            writer.write(ws_frame(message_op, message))
            await writer.drain()
            message_op, parts, size = 0, [], 0


# ---------------------------------------------------------------------------------------------
# multipart/form-data, streamed


class MultipartError(Exception):
    pass


def multipart_boundary(content_type: str) -> Optional[bytes]:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        k, _, v = param.strip().partition("=")
        if k.strip().lower() == "boundary":
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            return v.encode("latin-1") if v else None
    return None


def parse_disposition(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for piece in value.split(";")[1:]:
        k, _, v = piece.strip().partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1].replace('\\"', '"')
        out[k.strip().lower()] = v
    return out


class PartSink:
    """Where one part's bytes go: `write` per piece, `close` at its end."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


async def read_multipart(body: Body, boundary: bytes, open_part: Callable[[dict[str, str]], PartSink]) -> None:
    """Reads a multipart body a chunk at a time, handing each part to the sink `open_part`
    makes from the part's headers (names lower-cased); at most one chunk plus a delimiter
    is held in memory."""
    delim = b"\r\n--" + boundary
    buf = bytearray(b"\r\n")  # so that a body starting with the boundary matches delim
    state = "preamble"
    sink: Optional[PartSink] = None
    eof = False

    async def more() -> bool:
        nonlocal eof
        if eof:
            return False
        data = await body.read()
        if not data:
            eof = True
            return False
        buf.extend(data)
        return True

    while True:
        if state == "preamble":
            i = buf.find(delim)
            if i < 0:
                del buf[: max(0, len(buf) - len(delim))]
                if not await more():
                    raise MultipartError("no multipart boundary in the body")
                continue
            del buf[: i + len(delim)]
            state = "after-delimiter"
        elif state == "after-delimiter":
            if len(buf) < 2 and await more():
                continue
            if buf[:2] == b"--":
                await body.discard()  # the epilogue
                return
            j = buf.find(b"\r\n")
            if j < 0:
                if len(buf) > 1024 or not await more():
                    raise MultipartError("malformed boundary line")
                continue
            del buf[: j + 2]
            state = "headers"
        elif state == "headers":
            j = buf.find(b"\r\n\r\n")
            if buf.startswith(b"\r\n"):
                j, raw = 0, b""
            elif j >= 0:
                raw = bytes(buf[:j])
            else:
                if len(buf) > 16384 or not await more():
                    raise MultipartError("malformed part headers")
                continue
            headers = {}
            for line in raw.split(b"\r\n"):
                k, sep, v = line.partition(b":")
                if sep:
                    headers[k.strip().decode("latin-1").lower()] = v.strip().decode("utf-8", "replace")
            del buf[: j + (2 if j == 0 and not raw else 4)]
            sink = open_part(headers)
            state = "data"
        else:  # data
            i = buf.find(delim)
            if i >= 0:
                sink.write(bytes(buf[:i]))  # type: ignore[union-attr]
                sink.close()  # type: ignore[union-attr]
                sink = None
                del buf[: i + len(delim)]
                state = "after-delimiter"
                continue
            keep = len(delim) - 1
            if len(buf) > keep:
                sink.write(bytes(buf[: len(buf) - keep]))  # type: ignore[union-attr]
                del buf[: len(buf) - keep]
            if not await more():
                raise MultipartError("the body ends inside a part")
