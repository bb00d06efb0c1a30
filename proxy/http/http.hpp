#pragma once
// The HTTP/1.1 server core: one Listener per worker io_context (SO_REUSEPORT), keep-alive,
// pipelined requests answered in order, limits and deadlines on every read and write. Beast is
// used only inside proxy/http/*.cpp; handlers see the small Request/Response types below.
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/result.hpp>

#include "proxy/http/problem.hpp"

namespace pitstop::http {

enum class Method { get, head, post, put, patch, delete_, options, other };

// A parsed request. Views stay valid until the handler's coroutine completes.
class Request {
 public:
  Request(const void* message, boost::asio::ip::tcp::endpoint peer);

  Method method() const;
  std::string_view method_text() const;
  std::string_view target() const;  // as sent: path and query, percent-encoded
  std::string_view path() const;    // target up to '?', still encoded
  std::string_view query() const;   // after '?', "" when absent
  // First value of a header field, "" when absent. Names are case-insensitive.
  std::string_view header(std::string_view name) const;
  // The same for the fields pitstop reads on every request, found without string compares.
  enum class Field { authorization, cookie, if_none_match, x_forwarded_for, content_type };
  std::string_view header(Field f) const;
  // Every line of a field, in order: up to `max` values into `out`; returns how many lines
  // there are (possibly more than `max`).
  std::size_t headers(Field f, std::string_view* out, std::size_t max) const;
  bool has_header(std::string_view name) const;
  std::string_view body() const;
  bool keep_alive() const;
  unsigned version() const;  // 10 or 11
  const boost::asio::ip::tcp::endpoint& peer() const { return peer_; }

 private:
  const void* message_;  // boost::beast::http::request<string_body>
  boost::asio::ip::tcp::endpoint peer_;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  // Further header lines, already formatted ("Name: value\r\n"): one buffer, not a string per
  // name and value.
  std::string headers;
  std::string body;
  // A body owned elsewhere (a cached entry), sent instead of `body` without copying it.
  std::shared_ptr<const std::string> shared_body;
  bool close = false;  // close the connection after this response

  std::string_view body_view() const { return shared_body ? std::string_view(*shared_body) : std::string_view(body); }

  // Adds a header line; CR and LF in the value become spaces, so a value can never end the line.
  void set_header(std::string_view name, std::string_view value);
};

// Frappe's error shape: {"exc_type": …, "exception": …, "_server_messages": "[…]"}.
Response error_response(unsigned status, std::string_view exc_type, std::string_view message);
inline Response error_response(const Problem& p) { return error_response(p.status, p.exc_type, p.message); }
// A JSON body as is.
Response json_response(unsigned status, std::string body);

// What becomes of a request relayed to the upstream, decided before it is sent.
struct Passage {
  std::optional<Response> refusal;  // answered instead (the body is never read)
  std::string forwarded_for;        // the X-Forwarded-For the upstream gets
  std::string request_id;           // X-Request-Id to the upstream and back to the client ("": none)
  // Filled by the relay: the status the client was answered with (0: none, the connection
  // ended first) and the body bytes sent; then `done` is called with them, if set.
  unsigned status = 0;
  std::uint64_t bytes = 0;
  std::function<void(const Passage&)> done;
};

class Handler {
 public:
  virtual ~Handler() = default;
  virtual boost::asio::awaitable<Response> handle(const Request& request) = 0;
  // Asked once the head is read, before any of the body: true for a request that goes whole to
  // the upstream (its body streamed, never held). Cheap: it runs for every request.
  virtual bool relays(const Request& /*head*/) const { return false; }
  // For a request that relays(): refuse it, or say how to forward it.
  virtual boost::asio::awaitable<Passage> pass(const Request& head);
};

// The ERP behind pitstop (one per worker): connections for relayed requests.
struct UpstreamSettings {
  std::string site_name;  // X-Frappe-Site-Name, when set
  std::chrono::milliseconds response_timeout{120000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::seconds websocket_idle{300};
  std::size_t max_body_bytes = 100u << 20;
};

struct UpstreamConnection {
  boost::asio::ip::tcp::socket socket;
  bool reused = false;  // kept alive from an earlier request (the upstream may have closed it since)
};

// A request pitstop sends itself (the http origin, identities asked of the ERP), and the
// answer read whole.
struct OutgoingRequest {
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // besides Host's default
  std::string method = "GET";
  std::string body;
};
struct IncomingAnswer {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // end-to-end fields, in order
  std::string body;
};

class Upstream {
 public:
  enum class Target { http, realtime };
  virtual ~Upstream() = default;
  // A connection kept alive from an earlier request (checked for a close by the upstream when
  // `probe`) or a new one within the connect timeout; else 502 (cannot connect) or 503 (too many
  // in flight). Each connection acquired goes back through release().
  virtual boost::asio::awaitable<boost::system::result<UpstreamConnection, Problem>> acquire(Target target, bool probe = true) = 0;
  // Kept for the next request when `reusable` (its last answer was read to the end and said
  // keep-alive), else closed.
  virtual void release(boost::asio::ip::tcp::socket socket, Target target, bool reusable) = 0;
  virtual const UpstreamSettings& settings() const = 0;
  // One request on a pooled connection, its answer read whole up to `max_body` bytes; 502/504
  // as for a relay. An idempotent one (GET, HEAD, PUT, DELETE) is sent again, once, on a new
  // connection when a kept-alive one turns out closed before any answer.
  virtual boost::asio::awaitable<boost::system::result<IncomingAnswer, Problem>> send(const OutgoingRequest& request, std::size_t max_body) = 0;
};

struct Settings {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_url_bytes = 8 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  // Relayed bodies are streamed, so their limit is separate (Upstream::settings()).
  std::size_t max_connections = 10000;           // this listener's share
  std::size_t max_requests_per_connection = 0;  // 0 = no limit
  std::chrono::milliseconds header_read{10000};
  std::chrono::milliseconds body_read{30000};
  std::chrono::milliseconds idle_keepalive{60000};
  std::chrono::milliseconds write{30000};
};

struct ListenerStats {
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;  // over max_connections
  std::uint64_t requests = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t protocol_errors = 0;
};

class Listener {
 public:
  // `upstream` (optional) takes the requests the handler relays().
  Listener(boost::asio::io_context& ioc, Settings settings, Handler& handler, Upstream* upstream = nullptr);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds (SO_REUSEPORT, so every worker can bind the same address). Throws on failure: this
  // happens at start-up only.
  void bind(const boost::asio::ip::tcp::endpoint& endpoint);
  std::uint16_t port() const;
  void start();
  // Stops accepting, closes idle keep-alive connections and lets requests in progress finish
  // (their responses carry Connection: close). `done` runs once no connection is left.
  void drain(std::function<void()> done);
  // Closes every connection now (after the drain deadline).
  void abort_all();
  std::size_t connections() const;
  const ListenerStats& stats() const;

  struct Session;  // one per connection (internal.hpp)
  struct Impl;     // internal.hpp

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace pitstop::http
