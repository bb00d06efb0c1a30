#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "proxy/upstream/upstream.hpp"

namespace pitstop::upstream {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::result;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

// A kept-alive connection is usable when the upstream has neither closed it nor sent anything
// unasked (a late byte of an earlier answer, or a 408 before closing).
bool still_open(tcp::socket& s) {
  char byte;
  const ssize_t n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::string where_text(const config::HostPort& h) { return h.host + ":" + std::to_string(h.port); }

}  // namespace

Pool::Pool(asio::io_context& ioc, const config::Upstream& cfg) : ioc_(ioc), cfg_(cfg) {
  settings_.site_name = cfg.site_name;
  settings_.response_timeout = cfg.response_timeout;
  settings_.idle_timeout = cfg.idle_timeout;
  settings_.websocket_idle = cfg.websocket_idle;
  settings_.max_body_bytes = cfg.max_body_bytes;
}

Pool::~Pool() { close_idle(); }

void Pool::close_idle() {
  error_code ec;
  for (auto& s : idle_) s.close(ec);
  idle_.clear();
}

Stats Pool::stats() const {
  Stats s = stats_;
  s.idle = idle_.size();
  return s;
}

asio::awaitable<result<http::UpstreamConnection, http::Problem>> Pool::acquire(Target target, bool probe) {
  if (stats_.in_flight >= cfg_.max_concurrent) {
    ++stats_.saturated;
    co_return http::Problem{503, "ServiceUnavailable",
                            "Too many requests to the ERP in flight (upstream.max_concurrent is " + std::to_string(cfg_.max_concurrent) +
                                " per worker); retry shortly",
                            true};
  }
  // Websockets get connections of their own: they are never handed back.
  if (target == Target::http) {
    while (!idle_.empty()) {
      tcp::socket s = std::move(idle_.back());
      idle_.pop_back();
      if (!probe || still_open(s)) {
        ++stats_.reuses;
        ++stats_.in_flight;
        co_return http::UpstreamConnection{std::move(s), true};
      }
      ++stats_.stale;
      error_code ec;
      s.close(ec);
    }
  }
  const config::HostPort& where = target == Target::realtime && !cfg_.realtime.host.empty() ? cfg_.realtime : cfg_.address;
  ++stats_.in_flight;
  auto s = co_await connect(where);
  if (!s) {
    --stats_.in_flight;
    co_return s.error();
  }
  co_return http::UpstreamConnection{std::move(*s), false};
}

void Pool::release(tcp::socket socket, Target target, bool reusable) {
  if (stats_.in_flight > 0) --stats_.in_flight;
  error_code ec;
  if (!reusable || target != Target::http || idle_.size() >= cfg_.pool_size || !socket.is_open()) {
    socket.close(ec);
    return;
  }
  idle_.push_back(std::move(socket));
}

asio::awaitable<result<tcp::socket, http::Problem>> Pool::connect(const config::HostPort& where) {
  using namespace asio::experimental::awaitable_operators;
  auto failed = [&](const std::string& why) {
    ++stats_.connect_failures;
    return http::Problem{502, "BadGateway", "Cannot reach the ERP at " + where_text(where) + ": " + why, true};
  };
  tcp::resolver resolver(ioc_);
  asio::steady_timer timer(ioc_);
  timer.expires_after(cfg_.connect_timeout);
  auto resolved = co_await (resolver.async_resolve(where.host, std::to_string(where.port), kToken) || timer.async_wait(kToken));
  if (resolved.index() == 1) co_return failed("no address for the name within " + std::to_string(cfg_.connect_timeout.count()) + " ms");
  auto [rec, endpoints] = std::get<0>(resolved);
  if (rec) co_return failed(rec.message());
  tcp::socket socket(ioc_);
  auto connected = co_await (asio::async_connect(socket, endpoints, kToken) || timer.async_wait(kToken));
  if (connected.index() == 1) co_return failed("no connection within " + std::to_string(cfg_.connect_timeout.count()) + " ms");
  auto [cec, endpoint] = std::get<0>(connected);
  if (cec) co_return failed(cec.message());
  ++stats_.connects;
  error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  co_return std::move(socket);
}

struct Pool::Exchanged {
  boost::system::error_code ec;
  http::IncomingAnswer answer;
  bool keep_alive = false;
  bool answered = false;  // some of the answer arrived (then it is not sent again)
};

asio::awaitable<Pool::Exchanged> Pool::exchange(tcp::socket& socket, const http::OutgoingRequest& request, std::size_t max_body) {
  namespace bhttp = boost::beast::http;
  Exchanged out;
  bhttp::request<bhttp::string_body> req;
  req.method_string(request.method);
  req.target(request.target);
  req.version(11);
  req.set(bhttp::field::host, where_text(cfg_.address));
  for (const auto& [name, value] : request.headers) req.set(name, value);
  if (!cfg_.site_name.empty()) req.set("X-Frappe-Site-Name", cfg_.site_name);
  req.body() = request.body;
  if (!request.body.empty() || request.method != "GET") req.prepare_payload();
  auto [wec, wn] = co_await bhttp::async_write(socket, req, kToken);
  if (wec) {
    out.ec = wec;
    co_return out;
  }
  // Beast reads as much as the buffer has room for, at least 512 bytes; the body moves on into
  // the string, so an unreserved buffer would stay small and take the answer 512 bytes a call.
  boost::beast::flat_buffer buffer;
  buffer.reserve(16 * 1024);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(max_body);
  if (request.method == "HEAD") parser.skip(true);
  auto [rec, rn] = co_await bhttp::async_read(socket, buffer, parser, kToken);
  out.answered = parser.got_some();
  if (rec) {
    out.ec = rec;
    co_return out;
  }
  auto& res = parser.get();
  out.answer.status = res.result_int();
  out.keep_alive = res.keep_alive() && buffer.size() == 0;
  for (const auto& field : res) {
    switch (field.name()) {
      case bhttp::field::connection:
      case bhttp::field::keep_alive:
      case bhttp::field::transfer_encoding:
      case bhttp::field::content_length:
      case bhttp::field::trailer:
      case bhttp::field::upgrade:
      case bhttp::field::te:
      case bhttp::field::proxy_authenticate:
        continue;
      default:
        out.answer.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
  }
  out.answer.body = std::move(res.body());
  co_return out;
}

asio::awaitable<result<http::IncomingAnswer, http::Problem>> Pool::send(const http::OutgoingRequest& request, std::size_t max_body) {
  const bool idempotent = request.method == "GET" || request.method == "HEAD" || request.method == "PUT" || request.method == "DELETE";
  using namespace asio::experimental::awaitable_operators;
  for (int attempt = 0;; ++attempt) {
    auto conn = co_await acquire(Target::http, !idempotent);
    if (!conn) co_return conn.error();
    asio::steady_timer timer(ioc_);
    timer.expires_after(cfg_.response_timeout);
    auto done = co_await (exchange(conn->socket, request, max_body) || timer.async_wait(kToken));
    if (done.index() == 1) {
      release(std::move(conn->socket), Target::http, false);
      co_return http::Problem{504, "GatewayTimeout", "The ERP did not answer within " + std::to_string(cfg_.response_timeout.count()) + " ms", true};
    }
    Exchanged got = std::move(std::get<0>(done));
    release(std::move(conn->socket), Target::http, !got.ec && got.keep_alive);
    if (!got.ec) co_return std::move(got.answer);
    // A kept-alive connection the ERP closed meanwhile: sent again, once, on a new one.
    if (idempotent && conn->reused && !got.answered && attempt == 0) continue;
    if (got.ec == boost::beast::http::error::body_limit)
      co_return http::Problem{502, "BadGateway", "The ERP's answer is larger than " + std::to_string(max_body) + " bytes", false};
    co_return http::Problem{502, "BadGateway", "The ERP closed the connection without answering (" + got.ec.message() + ")", true};
  }
}

}  // namespace pitstop::upstream
