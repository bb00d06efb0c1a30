#pragma once
// The admin listener: its own port (admin.listen, loopback by default), on the main thread,
// never the public one. /metrics (Prometheus text), /admin/status (JSON). Everything but
// /metrics asks for admin.token as a Bearer credential when one is set.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "proxy/http/http.hpp"
#include "proxy/metrics/metrics.hpp"

namespace pitstop::app {

struct Shared;
struct Reloaded;
class Worker;

class Admin final : public http::Handler {
 public:
  Admin(boost::asio::io_context& ioc, Shared& shared, std::vector<Worker*> workers);
  boost::asio::awaitable<http::Response> handle(const http::Request& req) override;

  // Every worker's numbers (each copied on its own thread) and the process's own, summed.
  boost::asio::awaitable<metrics::Sample> collect();

 private:
  bool authorized(const http::Request& req) const;
  boost::asio::awaitable<http::Response> status();
  static http::Response reloaded(const Reloaded& r);
  void add_process(metrics::Sample& s) const;

  boost::asio::io_context& ioc_;
  Shared& shared_;
  std::vector<Worker*> workers_;
};

}  // namespace pitstop::app
