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

// Sets the session's deadline for one read or write; past it, the sweeper cancels the socket's
// pending operations (not the socket closed, so that a 408 can still be written).
void arm(const std::shared_ptr<Session>& s, milliseconds d) {
  s->timed_out = false;
  s->deadline = std::chrono::steady_clock::now() + d;
}

void disarm(const std::shared_ptr<Session>& s) { s->deadline = std::chrono::steady_clock::time_point::max(); }

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

}  // namespace

asio::awaitable<void> run_session(std::shared_ptr<Listener::Impl> L, std::shared_ptr<Session> s) {
  const Settings& cfg = L->settings;
  error_code ec;
  s->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  const asio::ip::tcp::endpoint peer = s->socket.remote_endpoint(ec);
  // Bounded: a full request plus some pipelined bytes; the parser enforces the finer limits.
  beast::flat_buffer buffer(cfg.max_header_bytes + cfg.max_body_bytes + 2 * kReadChunk);
  std::string head;
  std::size_t served = 0;
  bool first = true;

  while (true) {
    if (buffer.size() == 0) {
      if (L->draining) break;
      // Waiting for the next request: the idle keep-alive deadline (the header deadline for a
      // new connection, so that a silent client does not hold a slot for a minute).
      s->state = Session::State::idle;
      arm(s, first ? cfg.header_read : cfg.idle_keepalive);
      auto [rec, n] = co_await s->socket.async_read_some(buffer.prepare(kReadChunk), kToken);
      disarm(s);
      if (rec || n == 0) break;
      buffer.commit(n);
    }
    first = false;
    s->state = Session::State::reading;

    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
    parser.body_limit(cfg.max_body_bytes);
    // The header is usually all in the buffer already: parse it here rather than through
    // async_read_header, whose completion costs a trip through the scheduler per request.
    error_code hec;
    std::size_t hn = 0;
    bool folded = false;
    arm(s, cfg.header_read);
    while (true) {
      if (buffer.size() > 0) {
        const std::size_t used = parser.put(buffer.data(), hec);
        // Not eager: a finished header is all `used` covers, so the raw head is still at hand.
        if (!hec && parser.is_header_done())
          folded = has_obs_fold({static_cast<const char*>(buffer.data().data()), used});
        buffer.consume(used);
        hn += used;
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
        hec = rec == asio::error::eof ? (hn == 0 && buffer.size() == 0 ? bhttp::error::end_of_stream : bhttp::error::partial_message) : rec;
        break;
      }
      buffer.commit(n);
    }
    disarm(s);
    if (hec) {
      if (s->timed_out) {
        ++L->stats.timeouts;
        co_await send_and_close(s, cfg, error_response(408, "RequestTimeout", "The request header was not received in time"));
      } else if (hec == bhttp::error::body_limit) {
        // Content-Length already says the body is too large: refuse without reading it.
        ++L->stats.protocol_errors;
        co_await send_and_close(s, cfg, too_large_body(cfg));
      } else if (hec == bhttp::error::header_limit) {
        ++L->stats.protocol_errors;
        // Beast consumes the request line once parsed: then the target tells, else the buffer.
        const auto target = parser.get().target();
        if (target.empty() ? request_line_too_long(buffer, cfg.max_url_bytes) : target.size() > cfg.max_url_bytes)
          co_await send_and_close(s, cfg, too_long_url(cfg));
        else
          co_await send_and_close(s, cfg, too_large_header(cfg));
      } else if (hec == bhttp::error::end_of_stream || hec == asio::error::eof ||
                 hec == asio::error::connection_reset || hec == asio::error::operation_aborted) {
        // The client went away mid-request, or we are shutting down.
      } else {
        ++L->stats.protocol_errors;
        co_await send_and_close(s, cfg, error_response(400, "BadRequest", "Malformed HTTP request: " + hec.message()));
      }
      break;
    }
    auto& msg = parser.get();
    // Beast applies its header limit to the fields after the request line and per read, so it
    // lets through up to about twice the limit: check the size actually consumed.
    if (hn > cfg.max_header_bytes && msg.target().size() <= cfg.max_url_bytes) {
      ++L->stats.protocol_errors;
      co_await send_and_close(s, cfg, too_large_header(cfg));
      break;
    }
    if (msg.target().size() > cfg.max_url_bytes) {
      ++L->stats.protocol_errors;
      co_await send_and_close(s, cfg, too_long_url(cfg));
      break;
    }
    if (folded) {
      ++L->stats.protocol_errors;
      co_await send_and_close(s, cfg, error_response(400, "BadRequest", "Header lines folded onto several lines (obs-fold) are not accepted"));
      break;
    }
    if (auto refusal = check_head(msg)) {
      ++L->stats.protocol_errors;
      co_await send_and_close(s, cfg, error_response(refusal->status, refusal->exc_type, refusal->message));
      break;
    }
    if (parser.content_length() && *parser.content_length() > cfg.max_body_bytes) {
      ++L->stats.protocol_errors;
      co_await send_and_close(s, cfg, too_large_body(cfg));
      break;
    }
    if (!parser.is_done()) {
      if (beast::iequals(msg[bhttp::field::expect], "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        arm(s, cfg.write);
        auto [cec, cn] = co_await asio::async_write(s->socket, asio::buffer(kContinue.data(), kContinue.size()), kToken);
        disarm(s);
        if (cec) break;
      }
      arm(s, cfg.body_read);
      auto [bec, bn] = co_await bhttp::async_read(s->socket, buffer, parser, kToken);
      disarm(s);
      if (bec) {
        if (s->timed_out) {
          ++L->stats.timeouts;
          co_await send_and_close(s, cfg, error_response(408, "RequestTimeout", "The request body was not received in time"));
        } else if (bec == bhttp::error::body_limit) {
          ++L->stats.protocol_errors;
          co_await send_and_close(s, cfg, too_large_body(cfg));
        } else if (bec == bhttp::error::end_of_stream || bec == bhttp::error::partial_message ||
                   bec == asio::error::eof || bec == asio::error::connection_reset ||
                   bec == asio::error::operation_aborted) {
        } else {
          ++L->stats.protocol_errors;
          co_await send_and_close(s, cfg, error_response(400, "BadRequest", "Malformed HTTP request body: " + bec.message()));
        }
        break;
      }
    }

    s->state = Session::State::handling;
    ++L->stats.requests;
    ++served;
    Request request(&msg, peer);
    Response resp = co_await L->handler.handle(request);

    const bool keep = msg.keep_alive() && !resp.close && !L->draining &&
                      (cfg.max_requests_per_connection == 0 || served < cfg.max_requests_per_connection);
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
    arm(s, cfg.write);
    auto [wec, wn] = co_await asio::async_write(s->socket, buffers, kToken);
    disarm(s);
    if (wec) {
      if (s->timed_out) ++L->stats.timeouts;
      break;
    }
    if (!keep) {
      // Pipelined requests behind this one will not be answered; read them away before closing
      // so that the kernel does not reset the connection under the response.
      if (buffer.size() > 0) co_await linger_close(s);
      else s->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
      break;
    }
  }
  s->socket.close(ec);
}

}  // namespace pitstop::http
