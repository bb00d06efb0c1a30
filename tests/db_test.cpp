#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/db/db.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
namespace db = pitstop::db;
using namespace std::chrono_literals;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kToken);
}

std::unique_ptr<db::Pool> make_pool(asio::io_context& ioc, std::size_t size, std::chrono::milliseconds query_timeout = 5000ms,
                                    std::optional<pitstop::config::MariaDb> server = std::nullopt,
                                    std::chrono::milliseconds acquire_timeout = 2000ms) {
  auto s = server ? *server : pitstop::test::service_config().mariadb.primary;
  return std::make_unique<db::Pool>(ioc, s, size, 2000ms, query_timeout, acquire_timeout);
}

const std::string& value(const db::ResultSet& r, std::size_t row, std::size_t col) {
  static const std::string null = "<NULL>";
  return r.rows.at(row).at(col) ? *r.rows[row][col] : null;
}

constexpr const char* kTypesSql =
    "SELECT CAST(-7 AS SIGNED) AS i, CAST(18446744073709551615 AS UNSIGNED) AS u, "
    "CAST(12.5 AS DECIMAL(21,9)) AS d, CAST(0.25 AS DOUBLE) AS f, _utf8mb4'Müller 🚗' AS s, "
    "DATE('2026-01-31') AS dt, CAST('2026-01-31 10:00:00.123456' AS DATETIME(6)) AS ts, "
    "CAST('09:30:00' AS TIME) AS t, NULL AS n, X'00FF' AS b";

void check_types(const db::ResultSet& r) {
  ASSERT_EQ(r.columns.size(), 10u);
  ASSERT_EQ(r.rows.size(), 1u);
  const db::Kind kinds[] = {db::Kind::integer, db::Kind::unsigned_integer, db::Kind::decimal, db::Kind::floating,
                            db::Kind::string,  db::Kind::date,             db::Kind::datetime, db::Kind::time,
                            db::Kind::null,    db::Kind::blob};
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(static_cast<int>(r.columns[i].kind), static_cast<int>(kinds[i])) << r.columns[i].name;
  EXPECT_EQ(r.columns[4].name, "s");
  EXPECT_EQ(value(r, 0, 0), "-7");
  EXPECT_EQ(value(r, 0, 1), "18446744073709551615");
  EXPECT_EQ(value(r, 0, 2), "12.500000000");
  EXPECT_EQ(std::stod(value(r, 0, 3)), 0.25);
  EXPECT_EQ(value(r, 0, 4), "Müller 🚗");
  EXPECT_EQ(value(r, 0, 5), "2026-01-31");
  EXPECT_EQ(value(r, 0, 6), "2026-01-31 10:00:00.123456");
  EXPECT_EQ(value(r, 0, 7).substr(0, 8), "09:30:00");
  EXPECT_FALSE(r.rows[0][8].has_value());
  EXPECT_EQ(value(r, 0, 9), std::string("\x00\xff", 2));
}

asio::awaitable<void> types_roundtrip(db::Pool& pool) {
  auto prepared = co_await pool.execute(kTypesSql, {});
  EXPECT_TRUE(prepared) << (prepared ? "" : prepared.error().message);
  if (prepared) check_types(*prepared);
  auto lease = co_await pool.acquire();
  EXPECT_TRUE(lease);
  if (!lease) co_return;
  auto text = co_await (*lease)->query(kTypesSql, 5000ms);
  EXPECT_TRUE(text) << (text ? "" : text.error().message);
  if (text) check_types(*text);
}

}  // namespace

TEST(MariaDb, TypesComeBackAsTextWithTheirKinds) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 2);
  pitstop::test::run(ioc, types_roundtrip(*pool));
}

namespace {
asio::awaitable<void> params(db::Pool& pool) {
  const std::string hostile("it's \"quoted\" \\ \0 and ünïcode", 30);
  const db::Param ps[] = {std::int64_t{std::numeric_limits<std::int64_t>::min()}, 2.5, std::string_view(hostile), nullptr,
                          std::string_view("' OR 1=1 --")};
  auto r = co_await pool.execute("SELECT ?, ?, ?, ? IS NULL, ?", ps);
  EXPECT_TRUE(r);
  if (!r) co_return;
  EXPECT_EQ(value(*r, 0, 0), "-9223372036854775808");
  EXPECT_EQ(std::stod(value(*r, 0, 1)), 2.5);
  EXPECT_EQ(value(*r, 0, 2), hostile);
  EXPECT_EQ(value(*r, 0, 3), "1");
  EXPECT_EQ(value(*r, 0, 4), "' OR 1=1 --");
  // A wrong number of values is refused before reaching the server.
  const db::Param one[] = {std::int64_t{1}};
  auto bad = co_await pool.execute("SELECT ?, ?", one);
  EXPECT_FALSE(bad);
  if (!bad) {
    EXPECT_EQ(bad.error().code, db::errc::protocol);
  }
}
}  // namespace

TEST(MariaDb, ParametersAreBoundNotSpliced) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 1);
  pitstop::test::run(ioc, params(*pool));
}

namespace {
asio::awaitable<void> statement_cache(db::Pool& pool) {
  for (int i = 0; i < 10; ++i) {
    const db::Param p[] = {std::int64_t{i}};
    auto r = co_await pool.execute("SELECT ? * 2", p);
    EXPECT_TRUE(r && value(*r, 0, 0) == std::to_string(i * 2));
  }
  auto lease = co_await pool.acquire();
  EXPECT_TRUE(lease);
  if (!lease) co_return;
  EXPECT_EQ((*lease)->cached_statements(), 1u);
  auto r = co_await (*lease)->execute("SELECT 1", {}, 1000ms);
  EXPECT_TRUE(r);
  EXPECT_EQ((*lease)->cached_statements(), 2u);
}
}  // namespace

TEST(MariaDb, PreparedStatementsAreCachedPerConnection) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 1);
  pitstop::test::run(ioc, statement_cache(*pool));
  EXPECT_EQ(pool->stats().connects, 1u);
}

namespace {
asio::awaitable<void> server_errors(db::Pool& pool) {
  auto lease = co_await pool.acquire();
  EXPECT_TRUE(lease);
  if (!lease) co_return;
  const auto id = (*lease)->server_thread_id();
  auto syntax = co_await (*lease)->execute("SELEC 1", {}, 1000ms);
  EXPECT_FALSE(syntax);
  if (!syntax) {
    EXPECT_EQ(syntax.error().code, db::errc::server);
    EXPECT_EQ(syntax.error().server_code, 1064u);
    EXPECT_FALSE(syntax.error().message.empty());
  }
  const std::string table = "pitstop_test_dup_" + std::to_string(::getpid());
  auto created = co_await (*lease)->query("CREATE TEMPORARY TABLE " + table + " (k INT PRIMARY KEY)", 1000ms);
  EXPECT_TRUE(created);
  auto first = co_await (*lease)->query("INSERT INTO " + table + " VALUES (1)", 1000ms);
  EXPECT_TRUE(first);
  auto dup = co_await (*lease)->query("INSERT INTO " + table + " VALUES (1)", 1000ms);
  EXPECT_FALSE(dup);
  if (!dup) {
    EXPECT_EQ(dup.error().server_code, 1062u);
  }
  // The connection survived both errors.
  EXPECT_FALSE((*lease)->broken());
  auto ok = co_await (*lease)->query("SELECT CONNECTION_ID()", 1000ms);
  EXPECT_TRUE(ok && value(*ok, 0, 0) == std::to_string(id));
}
}  // namespace

TEST(MariaDb, ServerErrorsKeepTheConnection) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 1);
  pitstop::test::run(ioc, server_errors(*pool));
}

namespace {
asio::awaitable<void> transaction(db::Pool& pool) {
  const std::string table = "pitstop_test_tx_" + std::to_string(::getpid());
  auto lease = co_await pool.acquire();
  EXPECT_TRUE(lease);
  if (!lease) co_return;
  auto& c = **lease;
  auto created = co_await c.query("CREATE TEMPORARY TABLE " + table + " (k INT PRIMARY KEY) ENGINE=InnoDB", 1000ms);
  EXPECT_TRUE(created);
  auto begin = co_await c.query("BEGIN", 1000ms);
  EXPECT_TRUE(begin);
  const db::Param p[] = {std::int64_t{42}};
  auto ins = co_await c.execute("INSERT INTO " + table + " VALUES (?)", p, 1000ms);
  EXPECT_TRUE(ins && ins->affected_rows == 1);
  auto rollback = co_await c.query("ROLLBACK", 1000ms);
  EXPECT_TRUE(rollback);
  auto count = co_await c.query("SELECT COUNT(*) FROM " + table, 1000ms);
  EXPECT_TRUE(count && value(*count, 0, 0) == "0");
}
}  // namespace

TEST(MariaDb, TransactionsRunOnOneLease) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 2);
  pitstop::test::run(ioc, transaction(*pool));
}

namespace {
asio::awaitable<void> one_query(db::Pool& pool, int i, int& ok, int& done) {
  const db::Param p[] = {std::int64_t{i}};
  auto r = co_await pool.execute("SELECT ? + 1, SLEEP(0.001)", p);
  if (r && value(*r, 0, 0) == std::to_string(i + 1)) ++ok;
  ++done;
}
asio::awaitable<void> many_queries(db::Pool& pool, int n, int& ok) {
  int done = 0;
  for (int i = 0; i < n; ++i) asio::co_spawn(co_await asio::this_coro::executor, one_query(pool, i, ok, done), asio::detached);
  for (int waited = 0; done < n && waited < 3000; ++waited) co_await sleep_for(10ms);
}
}  // namespace

TEST(MariaDb, HundredsOfConcurrentQueriesShareASmallPool) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 4, 5000ms, std::nullopt, 20000ms);
  int ok = 0;
  pitstop::test::run(ioc, many_queries(*pool, 300, ok));
  EXPECT_EQ(ok, 300);
  EXPECT_LE(pool->stats().connects, 4u);
  EXPECT_EQ(pool->open_connections(), pool->idle_connections());
}

namespace {
asio::awaitable<void> deadline(db::Pool& pool) {
  auto started = std::chrono::steady_clock::now();
  auto r = co_await pool.execute("SELECT SLEEP(3)", {});
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(r);
  if (!r) {
    EXPECT_EQ(r.error().code, db::errc::timeout);
  }
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1500ms);
  auto next = co_await pool.execute("SELECT 7", {});
  EXPECT_TRUE(next && value(*next, 0, 0) == "7");
}
}  // namespace

TEST(MariaDb, QueryPastItsDeadlineIsAbandonedAndTheConnectionReplaced) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 1, 200ms);
  pitstop::test::run(ioc, deadline(*pool));
  EXPECT_EQ(pool->stats().timeouts, 1u);
  EXPECT_EQ(pool->stats().discarded, 1u);
  EXPECT_EQ(pool->stats().connects, 2u);
}

namespace {
asio::awaitable<void> killed(db::Pool& pool, db::Pool& admin) {
  auto id = co_await pool.execute("SELECT CONNECTION_ID()", {});
  EXPECT_TRUE(id);
  if (!id) co_return;
  auto k = co_await admin.execute("KILL " + value(*id, 0, 0), {});
  EXPECT_TRUE(k) << (k ? "" : k.error().message);
  co_await sleep_for(100ms);
  // The idle connection is dead; a read is retried once on a fresh connection.
  auto r = co_await pool.execute("SELECT CONNECTION_ID()", {});
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  if (r) {
    EXPECT_NE(value(*r, 0, 0), value(*id, 0, 0));
  }
  // A write is not retried: it reports the loss.
  auto id2 = value(*r, 0, 0);
  co_await admin.execute("KILL " + id2, {});
  co_await sleep_for(100ms);
  auto w = co_await pool.execute("SELECT 1", {}, /*idempotent=*/false);
  EXPECT_FALSE(w);
  if (!w) {
    EXPECT_EQ(w.error().code, db::errc::connection_lost);
  }
  auto again = co_await pool.execute("SELECT 1", {}, false);
  EXPECT_TRUE(again);
}
}  // namespace

TEST(MariaDb, KilledConnectionIsReplaced) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 1);
  auto admin = make_pool(ioc, 1);
  pitstop::test::run(ioc, killed(*pool, *admin));
  EXPECT_EQ(pool->stats().discarded, 2u);
}

namespace {
asio::awaitable<void> exhausted(db::Pool& pool) {
  auto held = co_await pool.acquire();
  EXPECT_TRUE(held);
  auto started = std::chrono::steady_clock::now();
  auto second = co_await pool.acquire();
  EXPECT_FALSE(second);
  if (!second) {
    EXPECT_EQ(second.error().code, db::errc::pool_timeout);
  }
  EXPECT_GE(std::chrono::steady_clock::now() - started, 250ms);
}
asio::awaitable<void> handoff(db::Pool& pool) {
  // A waiter gets the connection as soon as it is returned.
  auto held = co_await pool.acquire();
  EXPECT_TRUE(held);
  bool got = false;
  asio::co_spawn(co_await asio::this_coro::executor,
                 [](db::Pool& p, bool& g) -> asio::awaitable<void> {
                   auto l = co_await p.acquire();
                   g = static_cast<bool>(l);
                 }(pool, got),
                 asio::detached);
  co_await sleep_for(50ms);
  EXPECT_FALSE(got);
  { auto release = std::move(*held); }
  co_await sleep_for(50ms);
  EXPECT_TRUE(got);
}
}  // namespace

TEST(MariaDb, AcquireWaitsForAFreeConnectionThenTimesOut) {
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 1, 5000ms, std::nullopt, 300ms);
  pitstop::test::run(ioc, exhausted(*pool));
  pitstop::test::run(ioc, handoff(*pool));
}

namespace {
asio::awaitable<void> connect_timeout(db::Pool& pool) {
  auto started = std::chrono::steady_clock::now();
  auto r = co_await pool.execute("SELECT 1", {});
  EXPECT_FALSE(r);
  if (!r) {
    EXPECT_EQ(r.error().code, db::errc::connect_failed);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms);
}
}  // namespace

TEST(MariaDb, ServerThatNeverAnswersHitsTheConnectDeadline) {
  pitstop::test::BlackHole hole;
  asio::io_context ioc{1};
  pitstop::config::MariaDb s{"127.0.0.1", hole.port(), "u", "p", "d"};
  db::Pool pool(ioc, s, 2, 500ms, 1000ms, 1000ms);
  pitstop::test::run(ioc, connect_timeout(pool));
}

namespace {
struct Tally {
  int ok = 0, failed = 0, running = 0;
};
asio::awaitable<void> loop_queries(db::Pool& pool, int id, Tally& t, const bool& stop) {
  ++t.running;
  while (!stop) {
    const db::Param p[] = {std::int64_t{id}};
    auto r = co_await pool.execute("SELECT ?", p);
    if (r) ++t.ok;
    else ++t.failed;
    co_await sleep_for(10ms);
  }
  --t.running;
}
asio::awaitable<void> restart(db::Pool& pool, pitstop::test::MariaDbServer& server) {
  Tally t;
  bool stop = false;
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < 100; ++i) asio::co_spawn(ex, loop_queries(pool, i, t, stop), asio::detached);
  co_await sleep_for(500ms);
  EXPECT_GT(t.ok, 100);
  EXPECT_EQ(t.failed, 0);
  server.stop();
  co_await sleep_for(500ms);
  EXPECT_GT(t.failed, 0);
  server.start();
  // Recovery: some query succeeds again, then all of them do.
  const int ok_at_restart = t.ok;
  for (int i = 0; i < 1000 && t.ok == ok_at_restart; ++i) co_await sleep_for(10ms);
  EXPECT_GT(t.ok, ok_at_restart);
  co_await sleep_for(500ms);
  const int failed = t.failed, ok = t.ok;
  co_await sleep_for(500ms);
  EXPECT_EQ(t.failed, failed) << "queries still failing after recovery";
  EXPECT_GT(t.ok - ok, 100);
  stop = true;
  for (int i = 0; i < 500 && t.running > 0; ++i) co_await sleep_for(10ms);
  EXPECT_EQ(t.running, 0);
}
}  // namespace

TEST(MariaDb, ServerKilledWithQueriesInFlightThenRecovers) {
  pitstop::test::MariaDbServer server;
  asio::io_context ioc{1};
  auto pool = make_pool(ioc, 8, 2000ms, server.settings(), 3000ms);
  pitstop::test::run(ioc, restart(*pool, server), 120s);
}
