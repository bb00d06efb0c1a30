#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/db/db.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::db {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> close_detached(std::unique_ptr<Connection> conn) { co_await conn->close(); }
}  // namespace

struct Pool::Waiter {
  explicit Waiter(asio::io_context& ioc) : timer(ioc) {}
  asio::steady_timer timer;
  std::unique_ptr<Connection> handed;  // a connection given directly by release()
  bool slot_freed = false;             // a discarded connection made room to open one
};

Lease::Lease(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
Lease::Lease(Lease&& o) noexcept : pool_(o.pool_), conn_(std::move(o.conn_)) { o.pool_ = nullptr; }
Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    if (pool_ && conn_) pool_->release(std::move(conn_));
    pool_ = o.pool_;
    conn_ = std::move(o.conn_);
    o.pool_ = nullptr;
  }
  return *this;
}
Lease::~Lease() {
  if (pool_ && conn_) pool_->release(std::move(conn_));
}

Pool::Pool(asio::io_context& ioc, config::MariaDb server, std::size_t max_size, milliseconds connect_timeout,
           milliseconds query_timeout, milliseconds acquire_timeout)
    : ioc_(ioc),
      server_(std::move(server)),
      max_size_(max_size),
      connect_timeout_(connect_timeout),
      query_timeout_(query_timeout),
      acquire_timeout_(acquire_timeout),
      alive_(std::make_shared<bool>(true)) {}

Pool::~Pool() {
  close();
  *alive_ = false;
}

void Pool::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& w : waiters_) w->timer.cancel();
  waiters_.clear();
  for (auto& c : idle_) {
    --open_;
    asio::co_spawn(ioc_, close_detached(std::move(c)), asio::detached);
  }
  idle_.clear();
}

asio::awaitable<Result<Lease>> Pool::acquire() {
  const auto deadline = std::chrono::steady_clock::now() + acquire_timeout_;
  while (true) {
    if (closed_) co_return Error{errc::closed, 0, "pool closed"};
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->broken()) {
        discard(std::move(conn));
        continue;
      }
      co_return Lease(this, std::move(conn));
    }
    if (open_ < max_size_) {
      ++open_;
      auto alive = alive_;
      auto r = co_await Connection::open(ioc_, server_, connect_timeout_);
      if (!*alive) co_return Error{errc::closed, 0, "pool closed"};
      if (!r) {
        --open_;
        // Someone queued behind this attempt may try for themselves.
        if (!waiters_.empty()) {
          auto w = waiters_.front();
          waiters_.pop_front();
          w->slot_freed = true;
          w->timer.cancel();
        }
        co_return r.error();
      }
      ++stats_.connects;
      (*r)->set_latency(latency_);
      if (closed_) {
        --open_;
        asio::co_spawn(ioc_, close_detached(std::move(*r)), asio::detached);
        co_return Error{errc::closed, 0, "pool closed"};
      }
      co_return Lease(this, std::move(*r));
    }
    auto w = std::make_shared<Waiter>(ioc_);
    w->timer.expires_at(deadline);
    waiters_.push_back(w);
    auto alive = alive_;
    co_await w->timer.async_wait(kToken);
    if (!*alive) co_return Error{errc::closed, 0, "pool closed"};
    if (w->handed) co_return Lease(this, std::move(w->handed));
    if (w->slot_freed) continue;
    std::erase(waiters_, w);
    if (closed_) co_return Error{errc::closed, 0, "pool closed"};
    co_return Error{errc::pool_timeout, 0,
                    "all " + std::to_string(max_size_) + " connections busy for " +
                        std::to_string(acquire_timeout_.count()) + " ms"};
  }
}

void Pool::release(std::unique_ptr<Connection> conn) {
  if (conn->broken() || closed_) {
    discard(std::move(conn));
    return;
  }
  if (!waiters_.empty()) {
    auto w = waiters_.front();
    waiters_.pop_front();
    w->handed = std::move(conn);
    w->timer.cancel();
    return;
  }
  idle_.push_back(std::move(conn));
}

void Pool::discard(std::unique_ptr<Connection> conn) {
  --open_;
  ++stats_.discarded;
  asio::co_spawn(ioc_, close_detached(std::move(conn)), asio::detached);
  if (!waiters_.empty() && !closed_) {
    auto w = waiters_.front();
    waiters_.pop_front();
    w->slot_freed = true;
    w->timer.cancel();
  }
}

asio::awaitable<Result<ResultSet>> Pool::execute(std::string_view sql, std::span<const Param> params,
                                                 bool idempotent) {
  for (int attempt = 0;; ++attempt) {
    const bool had_idle = !idle_.empty();
    auto lease = co_await acquire();
    if (!lease) co_return lease.error();
    ++stats_.queries;
    auto r = co_await (*lease)->execute(sql, params, query_timeout_);
    if (!r && r.error().code == errc::timeout) ++stats_.timeouts;
    // A pooled connection can have died while idle (server restart, idle timeout): that shows as
    // connection_lost on its first use, and a read may safely run again on a fresh one.
    if (!r && r.error().code == errc::connection_lost && idempotent && had_idle && attempt == 0) continue;
    co_return r;
  }
}

asio::awaitable<Result<void>> Pool::ping() {
  for (int attempt = 0;; ++attempt) {
    const bool had_idle = !idle_.empty();
    auto lease = co_await acquire();
    if (!lease) co_return lease.error();
    auto r = co_await (*lease)->ping(query_timeout_);
    if (!r && r.error().code == errc::connection_lost && had_idle && attempt == 0) continue;
    co_return r;
  }
}

}  // namespace pitstop::db
