#pragma once
// The ERP behind pitstop, seen from one worker: keep-alive connections for the requests no rule
// answers (http::Upstream), bounded in number in flight and kept idle, with a connect deadline.
#include <cstdint>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "proxy/config/config.hpp"
#include "proxy/http/http.hpp"

namespace pitstop::upstream {

struct Stats {
  std::uint64_t connects = 0;        // new connections made
  std::uint64_t reuses = 0;          // requests sent on a kept-alive connection
  std::uint64_t stale = 0;           // kept-alive connections found closed by the upstream
  std::uint64_t connect_failures = 0;
  std::uint64_t saturated = 0;       // refused with 503: max_concurrent in flight
  std::size_t in_flight = 0;
  std::size_t idle = 0;
};

// One per worker, on its thread.
class Pool final : public http::Upstream {
 public:
  Pool(boost::asio::io_context& ioc, const config::Upstream& cfg);
  ~Pool() override;

  boost::asio::awaitable<boost::system::result<http::UpstreamConnection, http::Problem>> acquire(Target target, bool probe = true) override;
  void release(boost::asio::ip::tcp::socket socket, Target target, bool reusable) override;
  const http::UpstreamSettings& settings() const override { return settings_; }
  boost::asio::awaitable<boost::system::result<http::IncomingAnswer, http::Problem>> send(const http::OutgoingRequest& request,
                                                                                        std::size_t max_body) override;
  Stats stats() const;
  void close_idle();

 private:
  boost::asio::awaitable<boost::system::result<boost::asio::ip::tcp::socket, http::Problem>> connect(const config::HostPort& where);
  struct Exchanged;
  boost::asio::awaitable<Exchanged> exchange(boost::asio::ip::tcp::socket& socket, const http::OutgoingRequest& request, std::size_t max_body);

  boost::asio::io_context& ioc_;
  config::Upstream cfg_;
  http::UpstreamSettings settings_;
  std::vector<boost::asio::ip::tcp::socket> idle_;  // most recently used last
  Stats stats_;
};

}  // namespace pitstop::upstream
