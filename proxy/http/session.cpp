#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include "proxy/http/framing.hpp"
#include "proxy/http/internal.hpp"
#include "proxy/http/relay.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
using std::chrono::milliseconds;
using Session = Listener::Session;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadChunk = 16 * 1024;
// After an error answer the client may still be sending (a body we refused): read and discard
// for a while before closing, or the kernel's RST could destroy the answer before it is read.
constexpr milliseconds kLingerTime{1000};
constexpr std::size_t kLingerBytes = 1 << 20;

// The request line is the part of the header block that a long URL fills: when the header limit
// is hit, tell a long URL (414) from many or long fields (431).
bool request_line_too_long(const beast::flat_buffer& buffer, std::size_t max_url) {
  auto data = buffer.data();
  std::string_view bytes(static_cast<const char*>(data.data()), data.size());
  auto eol = bytes.find("\r\n");
  std::size_t line = eol == std::string_view::npos ? bytes.size() : eol;
  // "GET " + target + " HTTP/1.1": allow for the method and version around the target.
  return line > max_url + 32;
}

asio::awaitable<void> linger_close(std::shared_ptr<Session> s) {
  error_code ec;
  s->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  std::vector<char> sink(kReadChunk);
  std::size_t total = 0;
  arm(s, kLingerTime);
  while (total < kLingerBytes) {
    auto [rec, n] = co_await s->socket.async_read_some(asio::buffer(sink), kToken);
    if (rec || s->timed_out) break;
    total += n;
  }
  disarm(s);
  s->socket.close(ec);
}


Response too_large_body(const Settings& cfg) {
  return error_response(413, "RequestEntityTooLarge", "The request body is larger than " + std::to_string(cfg.max_body_bytes) + " bytes");
}
Response too_long_url(const Settings& cfg) {
  return error_response(414, "RequestURITooLarge", "The request URL is longer than " + std::to_string(cfg.max_url_bytes) + " bytes");
}
Response too_large_header(const Settings& cfg) {
  return error_response(431, "RequestHeaderFieldsTooLarge",
                        "The request header block is larger than " + std::to_string(cfg.max_header_bytes) + " bytes");
}

// How a connection ends before its request reaches the handler: an error answer, counted as a
// timeout or a protocol error, or nothing at all when the client went away (or we are stopping).
struct Refused {
  enum class Count { none, timeouts, protocol_errors };
  Count count = Count::none;
  std::optional<Response> answer;
};

Refused request_timeout(std::string_view message) {
  return {Refused::Count::timeouts, error_response(408, "RequestTimeout", message)};
}
Refused protocol_error(Response answer) { return {Refused::Count::protocol_errors, std::move(answer)}; }

asio::awaitable<void> refuse(Listener::Impl& L, std::shared_ptr<Session> s, Refused r) {
  if (r.count == Refused::Count::timeouts) ++L.stats.timeouts;
  if (r.count == Refused::Count::protocol_errors) ++L.stats.protocol_errors;
  if (r.answer) co_await send_and_close(std::move(s), L.settings, std::move(*r.answer));
}

using Parser = bhttp::request_parser<bhttp::string_body>;

// Until the next request's first bytes are in the buffer (already, when it was pipelined); false
// when the connection is done instead: draining, closed by the client, or idle too long.
asio::awaitable<bool> next_request(const Listener::Impl& L, const std::shared_ptr<Session>& s,
                                   beast::flat_buffer& buffer, bool first) {
  if (buffer.size() > 0) co_return true;
  if (L.draining) co_return false;
  const Settings& cfg = L.settings;
  // Waiting for the next request: the idle keep-alive deadline (the header deadline for a
  // new connection, so that a silent client does not hold a slot for a minute).
  s->state = Session::State::idle;
  arm(s, first ? cfg.header_read : cfg.idle_keepalive);
  auto [rec, n] = co_await s->socket.async_read_some(buffer.prepare(kReadChunk), kToken);
  disarm(s);
  if (rec || n == 0) co_return false;
  buffer.commit(n);
  co_return true;
}

// What reading a request head left in the parser: an error (the parser's, or the socket's as
// Beast names it), else a whole head of `bytes` bytes, `folded` when a field line was.
struct HeadRead {
  error_code ec;
  std::size_t bytes = 0;
  bool folded = false;
};

// The head, under the header deadline. The header is usually all in the buffer already: parse
// it here rather than through async_read_header, whose completion costs a trip through the
// scheduler per request.
asio::awaitable<HeadRead> read_head(const std::shared_ptr<Session>& s, const Settings& cfg, beast::flat_buffer& buffer,
                                    Parser& parser) {
  HeadRead head;
  error_code& hec = head.ec;
  arm(s, cfg.header_read);
  while (true) {
    if (buffer.size() > 0) {
      const std::size_t used = parser.put(buffer.data(), hec);
      // Not eager: a finished header is all `used` covers, so the raw head is still at hand.
      if (!hec && parser.is_header_done())
        head.folded = has_obs_fold({static_cast<const char*>(buffer.data().data()), used});
      buffer.consume(used);
      head.bytes += used;
      if (hec == bhttp::error::need_more) hec = {};
      if (hec || parser.is_header_done()) break;
    }
    const std::size_t room = std::min(kReadChunk, buffer.max_size() - buffer.size());
    if (room == 0) {
      hec = bhttp::error::header_limit;
      break;
    }
    auto [rec, n] = co_await s->socket.async_read_some(buffer.prepare(room), kToken);
    if (rec) {
      // As Beast says it: the connection closed before a request began, or within one.
      hec = rec == asio::error::eof ? (head.bytes == 0 && buffer.size() == 0 ? bhttp::error::end_of_stream : bhttp::error::partial_message) : rec;
      break;
    }
    buffer.commit(n);
  }
  disarm(s);
  co_return head;
}

// The answer to a head that could not be read.
Refused head_failure(error_code hec, const Session& s, const Settings& cfg, const beast::flat_buffer& buffer,
                     const Parser& parser) {
  if (s.timed_out) return request_timeout("The request header was not received in time");
  // Content-Length already says the body is too large: refuse without reading it.
  if (hec == bhttp::error::body_limit) return protocol_error(too_large_body(cfg));
  if (hec == bhttp::error::header_limit) {
    // Beast consumes the request line once parsed: then the target tells, else the buffer.
    const auto target = parser.get().target();
    if (target.empty() ? request_line_too_long(buffer, cfg.max_url_bytes) : target.size() > cfg.max_url_bytes)
      return protocol_error(too_long_url(cfg));
    return protocol_error(too_large_header(cfg));
  }
  if (hec == bhttp::error::end_of_stream || hec == asio::error::eof || hec == asio::error::connection_reset ||
      hec == asio::error::operation_aborted)
    return {};  // The client went away mid-request, or we are shutting down.
  return protocol_error(error_response(400, "BadRequest", "Malformed HTTP request: " + hec.message()));
}

// A head read whole but refused: too large, a URL too long, folded lines, framing check_head
// refuses.
std::optional<Refused> check_request_head(const HeadRead& head, const Settings& cfg, Parser& parser) {
  auto& msg = parser.get();
  // Beast applies its header limit to the fields after the request line and per read, so it
  // lets through up to about twice the limit: check the size actually consumed.
  if (head.bytes > cfg.max_header_bytes && msg.target().size() <= cfg.max_url_bytes)
    return protocol_error(too_large_header(cfg));
  if (msg.target().size() > cfg.max_url_bytes) return protocol_error(too_long_url(cfg));
  if (head.folded)
    return protocol_error(error_response(400, "BadRequest", "Header lines folded onto several lines (obs-fold) are not accepted"));
  if (auto refusal = check_head(msg)) return protocol_error(error_response(*refusal));
  return std::nullopt;
}

// A body pitstop reads itself is bounded by its own limit (a relayed one by the upstream's).
std::optional<Refused> bound_body(const Settings& cfg, Parser& parser) {
  if (parser.content_length() && *parser.content_length() > cfg.max_body_bytes) return protocol_error(too_large_body(cfg));
  parser.body_limit(cfg.max_body_bytes);
  return std::nullopt;
}

// The rest of the message into memory, under the body deadline, after a 100 Continue when the
// client waits for one.
asio::awaitable<std::optional<Refused>> read_body(const std::shared_ptr<Session>& s, const Settings& cfg,
                                                  beast::flat_buffer& buffer, Parser& parser) {
  if (parser.is_done()) co_return std::nullopt;
  if (beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    arm(s, cfg.write);
    auto [cec, cn] = co_await asio::async_write(s->socket, asio::buffer(kContinue.data(), kContinue.size()), kToken);
    disarm(s);
    if (cec) co_return Refused{};
  }
  arm(s, cfg.body_read);
  auto [bec, bn] = co_await bhttp::async_read(s->socket, buffer, parser, kToken);
  disarm(s);
  if (!bec) co_return std::nullopt;
  if (s->timed_out) co_return request_timeout("The request body was not received in time");
  if (bec == bhttp::error::body_limit) co_return protocol_error(too_large_body(cfg));
  if (bec == bhttp::error::end_of_stream || bec == bhttp::error::partial_message || bec == asio::error::eof ||
      bec == asio::error::connection_reset || bec == asio::error::operation_aborted)
    co_return Refused{};
  co_return protocol_error(error_response(400, "BadRequest", "Malformed HTTP request body: " + bec.message()));
}

// Whether the connection serves another request after this one.
bool keep_alive(const Listener::Impl& L, const BeastRequest& msg, const Response& resp, std::size_t served) {
  const Settings& cfg = L.settings;
  return msg.keep_alive() && !resp.close && !L.draining &&
         (cfg.max_requests_per_connection == 0 || served < cfg.max_requests_per_connection);
}

// The answer, under the write deadline; false when it could not be written.
asio::awaitable<bool> write_answer(Listener::Impl& L, const std::shared_ptr<Session>& s, const BeastRequest& msg,
                                   Response& resp, bool keep, std::string& head) {
  if (keep && msg.version() == 10) resp.set_header("Connection", "keep-alive");
  head.clear();
  const std::string_view body = resp.body_view();
  // 304 has no body, but says nothing of its length either.
  if (resp.status == 304) write_head(head, resp, keep, 0);
  else write_head(head, resp, keep, body.size());
  std::array<asio::const_buffer, 2> buffers{
      asio::buffer(head), (msg.method() == bhttp::verb::head || resp.status == 304) ? asio::const_buffer{}
                                                                                    : asio::buffer(body.data(), body.size())};
  s->state = Session::State::writing;
  arm(s, L.settings.write);
  auto [wec, wn] = co_await asio::async_write(s->socket, buffers, kToken);
  disarm(s);
  if (wec) {
    if (s->timed_out) ++L.stats.timeouts;
    co_return false;
  }
  co_return true;
}

// After the last answer of a connection.
asio::awaitable<void> end_after_answer(const std::shared_ptr<Session>& s, const beast::flat_buffer& buffer) {
  // Pipelined requests behind this one will not be answered; read them away before closing
  // so that the kernel does not reset the connection under the response.
  if (buffer.size() > 0) {
    co_await linger_close(s);
  } else {
    error_code ec;
    s->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  }
}

}  // namespace

asio::awaitable<void> send_and_close(std::shared_ptr<Session> s, const Settings& cfg, Response r) {
  std::string out;
  write_head(out, r, false, r.body.size());
  out += r.body;
  s->state = Session::State::writing;
  arm(s, std::min(cfg.write, milliseconds(5000)));
  auto [ec, n] = co_await asio::async_write(s->socket, asio::buffer(out), kToken);
  disarm(s);
  if (!ec) co_await linger_close(s);
  error_code ignored;
  s->socket.close(ignored);
}

// A connection's whole life: requests read one at a time (pipelined ones wait in the buffer),
// each head read and checked before its body, each answered in order.
asio::awaitable<void> run_session(std::shared_ptr<Listener::Impl> L, std::shared_ptr<Session> s) {
  const Settings& cfg = L->settings;
  error_code ec;
  s->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  const asio::ip::tcp::endpoint peer = s->socket.remote_endpoint(ec);
  // Bounded: a full request plus some pipelined bytes; the parser enforces the finer limits.
  beast::flat_buffer buffer(cfg.max_header_bytes + cfg.max_body_bytes + 2 * kReadChunk);
  std::string head;  // an answer's head, its storage reused
  std::size_t served = 0;
  bool first = true;

  while (co_await next_request(*L, s, buffer, first)) {
    first = false;
    s->state = Session::State::reading;
    Parser parser;
    parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
    // Until it is known whose body this is: a relayed one may be larger.
    parser.body_limit(std::max<std::uint64_t>(cfg.max_body_bytes, L->upstream ? L->upstream->settings().max_body_bytes : 0));

    const HeadRead read = co_await read_head(s, cfg, buffer, parser);
    std::optional<Refused> refused = read.ec ? head_failure(read.ec, *s, cfg, buffer, parser)
                                             : check_request_head(read, cfg, parser);
    // The head is read and checked before any of the body: what becomes of the body is decided
    // here. A request for the upstream is relayed whole, its body streamed; any other is read
    // into memory and answered by the handler.
    if (!refused && L->upstream) {
      const Request head_only(&parser.get(), peer);
      if (L->handler.relays(head_only)) {
        s->state = Session::State::handling;
        ++L->stats.requests;
        ++served;
        Passage passage = co_await L->handler.pass(head_only);
        if (passage.refusal) {
          passage.status = passage.refusal->status;
          passage.bytes = passage.refusal->body.size();
          if (passage.done) passage.done(passage);
          co_await send_and_close(s, cfg, std::move(*passage.refusal));
          break;
        }
        const bool more = co_await relay(*L, s, buffer, parser, passage, served);
        if (passage.done) passage.done(passage);
        if (!more) break;
        continue;
      }
    }
    if (!refused) refused = bound_body(cfg, parser);
    if (!refused) refused = co_await read_body(s, cfg, buffer, parser);
    if (refused) {
      co_await refuse(*L, s, std::move(*refused));
      break;
    }

    s->state = Session::State::handling;
    ++L->stats.requests;
    ++served;
    auto& msg = parser.get();
    Request request(&msg, peer);
    Response resp = co_await L->handler.handle(request);

    const bool keep = keep_alive(*L, msg, resp, served);
    if (!co_await write_answer(*L, s, msg, resp, keep, head)) break;
    if (!keep) {
      co_await end_after_answer(s, buffer);
      break;
    }
  }
  s->socket.close(ec);
}

}  // namespace pitstop::http
