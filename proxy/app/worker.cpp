#include "proxy/app/worker.hpp"

#include <boost/asio/post.hpp>

#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::app {

namespace asio = boost::asio;

namespace {

http::Settings http_settings(const config::Config& c) {
  http::Settings s;
  s.max_header_bytes = c.limits.max_header_bytes;
  s.max_url_bytes = c.limits.max_url_bytes;
  s.max_body_bytes = c.limits.max_body_bytes;
  // SO_REUSEPORT spreads connections evenly enough for an even share per worker.
  const auto workers = static_cast<std::size_t>(c.effective_workers());
  s.max_connections = std::max<std::size_t>(1, (c.limits.max_connections + workers - 1) / workers);
  s.max_requests_per_connection = c.limits.max_requests_per_connection;
  s.header_read = c.timeouts.header_read;
  s.body_read = c.timeouts.body_read;
  s.idle_keepalive = c.timeouts.idle_keepalive;
  s.write = c.timeouts.write;
  return s;
}

}  // namespace

asio::awaitable<http::Response> Router::handle(const http::Request& req) {
  const auto path = req.path();
  if (path == "/healthz" || path == "/readyz") {
    if (req.method() != http::Method::get && req.method() != http::Method::head) {
      auto r = http::error_response(405, "MethodNotAllowed", "Use GET");
      r.set_header("Allow", "GET, HEAD");
      co_return r;
    }
    if (path == "/healthz") {
      auto r = http::json_response(200, "{\"status\":\"ok\"}");
      r.set_header("Cache-Control", "no-store");
      co_return r;
    }
    co_return co_await readiness(worker_);
  }
  std::string message = "No route for ";
  message.append(req.method_text());
  message += ' ';
  message.append(path.substr(0, 200));
  co_return http::error_response(404, "DoesNotExistError", message);
}

Worker::Worker(const config::Config& cfg, int index)
    : cfg_(cfg),
      index_(index),
      cache_(ioc_, cfg.redis_cache, "cache"),
      queue_(ioc_, cfg.redis_queue, "queue"),
      primary_(ioc_, cfg.mariadb.primary, static_cast<std::size_t>(cfg.mariadb.pool_size), cfg.mariadb.connect_timeout,
               cfg.mariadb.query_timeout, cfg.mariadb.acquire_timeout),
      router_(*this),
      listener_(ioc_, http_settings(cfg), router_) {}

Worker::~Worker() { join(); }

void Worker::start() {
  thread_ = std::thread([this] {
    cache_.start();
    queue_.start();
    listener_.start();
    ioc_.run();
  });
}

void Worker::drain(std::function<void()> done) {
  asio::post(ioc_, [this, done = std::move(done)]() mutable {
    draining_ = true;
    listener_.drain(std::move(done));
  });
}

void Worker::shutdown() {
  asio::post(ioc_, [this] {
    listener_.abort_all();
    cache_.stop();
    queue_.stop();
    primary_.close();
    ioc_.stop();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace pitstop::app
