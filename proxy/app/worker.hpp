#pragma once
// One worker thread's world. Nothing in here is shared with other workers.
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "proxy/config/config.hpp"
#include "proxy/db/db.hpp"
#include "proxy/http/http.hpp"
#include "proxy/redis/client.hpp"

namespace pitstop::app {

class Worker;

// Answers the proxy's own endpoints; everything else is not found (yet: rules come next).
class Router : public http::Handler {
 public:
  explicit Router(Worker& worker) : worker_(worker) {}
  boost::asio::awaitable<http::Response> handle(const http::Request& request) override;

 private:
  Worker& worker_;
};

class Worker {
 public:
  Worker(const config::Config& cfg, int index);
  ~Worker();

  boost::asio::io_context& ioc() { return ioc_; }
  const config::Config& config() const { return cfg_; }
  redis::Client& redis_cache() { return cache_; }
  redis::Client& redis_queue() { return queue_; }
  db::Pool& primary() { return primary_; }
  http::Listener& listener() { return listener_; }
  bool draining() const { return draining_; }

  // Runs the event loop on a new thread.
  void start();
  // Posted to the worker's thread: stop accepting, finish requests, then `done` (on that thread).
  void drain(std::function<void()> done);
  // Posted: cut every connection now, close clients, stop the loop.
  void shutdown();
  void join();

 private:
  const config::Config& cfg_;
  int index_;
  boost::asio::io_context ioc_{1};
  redis::Client cache_;
  redis::Client queue_;
  db::Pool primary_;
  Router router_;
  http::Listener listener_;
  std::thread thread_;
  bool draining_ = false;
};

// /readyz: Redis cache, Redis queue and MariaDB reachable; 503 names what is not.
boost::asio::awaitable<http::Response> readiness(Worker& worker);

}  // namespace pitstop::app
