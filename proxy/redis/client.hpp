#pragma once
// An asynchronous Redis client for one worker: hiredis's async API driven by the worker's
// io_context. Commands are binary-safe argument vectors; concurrent commands share one connection
// and are pipelined. Every command has a deadline; a command past it drops the connection (its
// reply would poison the order of the others) and the client reconnects with backoff.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/result.hpp>

#include "proxy/config/config.hpp"
#include "proxy/redis/reply.hpp"
#include "proxy/metrics/metrics.hpp"

namespace pitstop::redis {

using Command = std::vector<std::string>;

// A Lua script, run by its SHA1 (EVALSHA) and sent whole only when Redis has lost it (NOSCRIPT).
class Script {
 public:
  explicit Script(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

struct Stats {
  std::uint64_t commands = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t connects = 0;
  std::uint64_t disconnects = 0;
};

class Client {
 public:
  // `name` appears in logs ("cache", "queue").
  Client(boost::asio::io_context& ioc, config::Redis settings, std::string name);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts connecting in the background; commands issued before the connection is up wait for it
  // (within their deadline).
  void start();
  // Closes the connection and fails every waiting command with errc::stopped. Idempotent.
  void stop();

  // One command. The error is a transport failure (errc); Redis error replies come back as values.
  // The arguments must stay alive until the call completes (g++ 12 cannot keep a braced list
  // alive across co_await: pass a named array).
  boost::asio::awaitable<boost::system::result<Reply>> command(std::span<const std::string_view> argv);
  // Several commands written together; replies in order. One deadline for the batch.
  boost::asio::awaitable<boost::system::result<std::vector<Reply>>> pipeline(std::span<const Command> commands);

  // EVALSHA, falling back to EVAL when the script is not loaded.
  boost::asio::awaitable<boost::system::result<Reply>> eval(const Script& script, std::span<const std::string_view> keys,
                                                            std::span<const std::string_view> args);

  // Turns this client into a subscriber of `channels` (use a client for nothing else then): every
  // message goes to `on_message` with its channel; `on_state(true)` runs each time the
  // subscription to all of them is (re)made, `on_state(false)` when it is lost (messages may be
  // missed until it is back). Messages come in the order Redis published them, whatever their
  // channel. Both run on the client's thread and must not block.
  void subscribe(std::vector<std::string> channels, std::function<void(std::string_view, std::string_view)> on_message,
                 std::function<void(bool)> on_state);
  bool subscribed() const;

  bool connected() const;
  const std::string& last_error() const;
  const Stats& stats() const;
  // Each round trip (a pipeline counts once) is observed in `h` (nullptr: not counted).
  void set_latency(metrics::Histogram* h);
  const std::string& name() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace pitstop::redis
