#pragma once
// MariaDB access for one worker: Connector/C's non-blocking API driven by the worker's io_context.
// A Pool hands out connections; each connection caches its prepared statements by SQL text; every
// operation has a deadline, and a connection that timed out or lost the server is discarded.
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/result.hpp>

#include "proxy/config/config.hpp"
#include "proxy/metrics/metrics.hpp"

namespace pitstop::db {

enum class errc {
  timeout = 1,       // the operation missed its deadline; the connection was discarded
  connection_lost,   // the server went away (2006/2013 and friends)
  connect_failed,    // could not open a connection
  pool_timeout,      // no pooled connection became free in time
  closed,            // the pool was closed
  server,            // the server refused the statement; see Error::server_code
  protocol,          // the client library failed in some other way
};

const boost::system::error_category& category();
inline boost::system::error_code make_error_code(errc e) { return {static_cast<int>(e), category()}; }

struct Error {
  boost::system::error_code code;
  unsigned server_code = 0;  // MariaDB error number (1062 duplicate key, 1213 deadlock, …)
  std::string message;
};

}  // namespace pitstop::db

template <>
struct boost::system::is_error_code_enum<pitstop::db::errc> : std::true_type {};

namespace pitstop::db {

// boost::system::result with a custom error type needs this to compile .value().
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

template <class T>
using Result = boost::system::result<T, Error>;

using Param = std::variant<std::nullptr_t, std::int64_t, double, std::string_view>;

enum class Kind { null, integer, unsigned_integer, decimal, floating, string, blob, date, datetime, time };

struct Column {
  std::string name;
  Kind kind = Kind::string;
};

// Values as text (MariaDB's own formatting); nullopt is SQL NULL. Kind tells how to render them.
struct ResultSet {
  std::vector<Column> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::uint64_t affected_rows = 0;
  std::uint64_t insert_id = 0;
};

struct Stats {
  std::uint64_t queries = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t connects = 0;
  std::uint64_t discarded = 0;
  std::uint64_t prepares = 0;
};

class Connection {
 public:
  struct Impl;
  explicit Connection(std::shared_ptr<Impl> impl);
  ~Connection();

  static boost::asio::awaitable<Result<std::unique_ptr<Connection>>> open(boost::asio::io_context& ioc,
                                                                          const config::MariaDb& server,
                                                                          std::chrono::milliseconds timeout);

  // Text protocol: statements without parameters (BEGIN, COMMIT, SET, DDL).
  boost::asio::awaitable<Result<ResultSet>> query(std::string_view sql, std::chrono::milliseconds timeout);
  // Binary protocol with `?` placeholders; the statement is prepared once per connection.
  boost::asio::awaitable<Result<ResultSet>> execute(std::string_view sql, std::span<const Param> params,
                                                    std::chrono::milliseconds timeout);
  boost::asio::awaitable<Result<void>> ping(std::chrono::milliseconds timeout);
  // Each statement's time is observed there (nullptr: not counted).
  void set_latency(metrics::Histogram* h);
  // Sends COM_QUIT without blocking the thread and releases everything.
  boost::asio::awaitable<void> close();

  // True once a deadline was missed or the server was lost: the pool discards it.
  bool broken() const;
  std::uint64_t server_thread_id() const;
  std::size_t cached_statements() const;

 private:
  std::shared_ptr<Impl> impl_;
};

class Pool;

// A connection on loan; it goes back to the pool (or is discarded when broken) on destruction.
class Lease {
 public:
  Lease() = default;
  Lease(Pool* pool, std::unique_ptr<Connection> conn);
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  ~Lease();
  Connection* operator->() const { return conn_.get(); }
  Connection& operator*() const { return *conn_; }

 private:
  Pool* pool_ = nullptr;
  std::unique_ptr<Connection> conn_;
};

class Pool {
 public:
  Pool(boost::asio::io_context& ioc, config::MariaDb server, std::size_t max_size,
       std::chrono::milliseconds connect_timeout, std::chrono::milliseconds query_timeout,
       std::chrono::milliseconds acquire_timeout);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  boost::asio::awaitable<Result<Lease>> acquire();

  // One statement on a pooled connection. When the connection turns out to be dead before the
  // statement could have run (the server restarted while it sat idle) it is retried once on a
  // fresh connection, so set `idempotent` only for reads.
  boost::asio::awaitable<Result<ResultSet>> execute(std::string_view sql, std::span<const Param> params,
                                                    bool idempotent = true);
  boost::asio::awaitable<Result<void>> ping();

  // Fails waiters, closes idle connections; leased ones are closed when returned.
  void close();

  std::chrono::milliseconds query_timeout() const { return query_timeout_; }
  std::size_t open_connections() const { return open_; }
  std::size_t idle_connections() const { return idle_.size(); }
  const Stats& stats() const { return stats_; }
  const config::MariaDb& server() const { return server_; }
  // Statements on this pool's connections are timed into `h` (the worker's; nullptr: not).
  void set_latency(metrics::Histogram* h) { latency_ = h; }

 private:
  friend class Lease;
  struct Waiter;
  void release(std::unique_ptr<Connection> conn);
  void discard(std::unique_ptr<Connection> conn);

  boost::asio::io_context& ioc_;
  config::MariaDb server_;
  std::size_t max_size_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds query_timeout_;
  std::chrono::milliseconds acquire_timeout_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  std::size_t open_ = 0;
  bool closed_ = false;
  Stats stats_;
  std::shared_ptr<bool> alive_;
  metrics::Histogram* latency_ = nullptr;
};

// The process-wide Connector/C initialisation; call once before starting threads.
void library_init();

}  // namespace pitstop::db
