#include "proxy/invalidation/invalidation.hpp"

#include <simdjson.h>

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::invalidation {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::steady_clock;

std::string utc_now() { return log::utc_text(std::chrono::system_clock::now(), 'T', 6, true); }

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view t) {
  // YYYY-MM-DD?HH:MM:SS[.ffffff][Z]
  if (t.size() < 19 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != ' ') || t[13] != ':' || t[16] != ':') return std::nullopt;
  auto num = [&](std::size_t at, std::size_t len, int& out) {
    out = 0;
    for (std::size_t i = at; i < at + len; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, s;
  if (!num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) || !num(14, 2, mi) || !num(17, 2, s)) return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  std::int64_t micros = 0;
  std::size_t i = 19;
  if (i < t.size() && t[i] == '.') {
    int digits = 0;
    for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i, ++digits)
      if (digits < 6) micros = micros * 10 + (t[i] - '0');
    for (; digits < 6; ++digits) micros *= 10;
  }
  // Days from the civil date (Howard Hinnant's algorithm): no time zone involved.
  const int yy = y - (mo <= 2);
  const int era = (yy >= 0 ? yy : yy - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(yy - era * 400);
  const unsigned doy = static_cast<unsigned>((153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1);
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(doe) - 719468;
  const std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + s;
  return std::chrono::system_clock::time_point(std::chrono::microseconds(secs * 1000000 + micros));
}

std::string encode(const Event& e) {
  std::string out;
  json::Writer w(out);
  w.begin_object().member("id", e.id).key("tags").begin_array();
  for (const auto& t : e.tags) w.value(t);
  w.end_array().member("source", e.source).member("time", e.time).member("site", e.site);
  if (!e.from.empty()) w.member("from", e.from);
  if (!e.cleared) w.member("cleared", false);
  w.end_object();
  return out;
}

std::optional<Event> decode(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::padded_string padded(json.data(), json.size());
  if (parser.parse(padded).get(doc)) return std::nullopt;
  Event e;
  std::string_view s;
  if (doc["id"].get(s)) return std::nullopt;
  e.id = std::string(s);
  simdjson::dom::array tags;
  if (doc["tags"].get(tags)) return std::nullopt;
  for (auto t : tags) {
    if (t.get(s)) return std::nullopt;
    e.tags.emplace_back(s);
  }
  if (!doc["source"].get(s)) e.source = std::string(s);
  if (!doc["time"].get(s)) e.time = std::string(s);
  if (!doc["site"].get(s)) e.site = std::string(s);
  if (!doc["from"].get(s)) e.from = std::string(s);
  bool cleared = true;
  if (!doc["cleared"].get(cleared)) e.cleared = cleared;
  return e;
}

Names names(std::string_view site) {
  const std::string prefix = "pitstop:" + std::string(site) + ":";
  return {prefix, prefix + "invalidations", prefix + "invalidations:stream", prefix + "members"};
}

std::string Names::inbox(std::string_view instance) const { return prefix + "instance:" + std::string(instance); }

namespace {
// Publishes and streams the event and says who must acknowledge it: the members whose lease is
// live now, read in the same atomic step, so that an instance that joins later cannot have
// missed the event unnoticed (it subscribes before it joins).
// KEYS: channel, stream, members. ARGV: event, stream max length.
const redis::Script kPublish(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PUBLISH', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf')
)lua");
}  // namespace

// ---------------------------------------------------------------------------------------------

Invalidator::Invalidator(cache::Remote& store, redis::Client& queue, redis::Client* erp, Settings settings)
    : store_(store), queue_(queue), erp_(erp), settings_(std::move(settings)), names_(invalidation::names(settings_.site)) {}

asio::awaitable<Delivery> Invalidator::deliver(Event e, const std::function<void(bool)>& after_delete) {
  Delivery out;
  auto deleted = co_await store_.invalidate(e.tags);
  if (!deleted) out.ec = deleted.error();
  out.cleared = static_cast<bool>(deleted);
  if (after_delete) after_delete(out.cleared);

  if (erp_ && !settings_.erp_db_name.empty()) {
    // Frappe keeps documents in its Redis as <db_name>|document_cache::<DocType>::<name>.
    std::vector<std::string> keys;
    for (const auto& t : e.tags) {
      if (t.rfind("doc:", 0) != 0) continue;
      auto slash = t.find('/');
      if (slash == std::string::npos) continue;
      keys.push_back(settings_.erp_db_name + "|document_cache::" + t.substr(4, slash - 4) + "::" + t.substr(slash + 1));
    }
    if (!keys.empty()) {
      std::vector<std::string_view> argv{"DEL"};
      argv.insert(argv.end(), keys.begin(), keys.end());
      auto r = co_await erp_->command(argv);
      if (!r && !out.ec) out.ec = r.error();
    }
  }

  if (e.site.empty()) e.site = settings_.site;
  e.cleared = out.cleared;
  const std::string json = encode(e);
  const std::string maxlen = std::to_string(settings_.stream_max_len);
  const std::string_view keys[] = {names_.channel, names_.stream, names_.members};
  const std::string_view args[] = {json, maxlen};
  auto r = co_await queue_.eval(kPublish, keys, args);
  if (!r || r->is_error()) {
    if (!out.ec) out.ec = r ? make_error_code(boost::system::errc::io_error) : r.error();
    co_return out;
  }
  out.published = true;
  out.published_at = steady_clock::now();
  for (const auto& m : r->elements)
    if (m.is_string()) out.members.push_back(m.str);
  co_return out;
}

// ---------------------------------------------------------------------------------------------

Relay::Relay(asio::io_context& ioc, db::Pool& pool, Invalidator& invalidator, std::chrono::milliseconds interval,
             std::chrono::seconds retention, std::function<void(const Event&)> on_delivered,
             std::function<void(std::chrono::steady_clock::time_point)> on_caught_up)
    : ioc_(ioc),
      pool_(pool),
      invalidator_(invalidator),
      interval_(interval),
      retention_(retention),
      on_delivered_(std::move(on_delivered)),
      on_caught_up_(std::move(on_caught_up)),
      timer_(ioc) {}

void Relay::start() {
  running_ = std::make_shared<bool>(true);
  asio::co_spawn(ioc_, run(), asio::detached);
}

void Relay::stop() {
  if (running_) *running_ = false;
  timer_.cancel();
}

void Relay::wake(std::uint64_t up_to) {
  wanted_ = std::max(wanted_, up_to);
  // A plain wake while a pass runs cancels no wait: remembered, or it would wait out the
  // interval (at start-up, the proof that events are heard comes during the first pass, and
  // Redis is trusted only after a pass that began after it). A binary-log wake (`up_to`) has
  // wanted_ and its backoff instead.
  if (up_to == 0) woken_ = true;
  timer_.cancel();
}

asio::awaitable<void> Relay::run() {
  auto running = running_;
  // The first pass at once: it is what makes Redis trusted after a start.
  while (*running) {
    behind_ = false;
    woken_ = false;
    co_await pass();
    if (!*running) break;
    timer_.expires_after(woken_ ? std::chrono::milliseconds(0) : next_delay());
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// A full page means more is waiting (an instance that was down, a burst of changes around
// pitstop): the next pass at once, after whatever else is queued on this thread. A row
// announced but not read yet: soon again, backing off to the interval.
std::chrono::milliseconds Relay::next_delay() {
  auto next = interval_;
  if (behind_) {
    next = std::chrono::milliseconds(0);
  } else if (wanted_ > scanned_) {
    next = std::min(retry_, interval_);
    retry_ *= 2;
  } else {
    retry_ = std::chrono::milliseconds(1);
  }
  return next;
}

namespace {

std::string sql_time(std::chrono::system_clock::time_point tp) { return log::utc_text(tp, ' ', 6, false); }

constexpr const char* kColumns = "SELECT `id`, `tags`, `source`, `created`, `site`, `done` FROM `pitstop_outbox` ";

// A pooled connection in a READ COMMITTED transaction; nullopt when there is none.
asio::awaitable<std::optional<db::Lease>> begin_pass(db::Pool& pool) {
  auto lease = co_await pool.acquire();
  if (!lease) co_return std::nullopt;
  auto& c = **lease;
  const auto timeout = pool.query_timeout();
  // Read committed, and no locking read of the outbox anywhere: a locking read (or an INSERT …
  // SELECT from it) waits for the newest row's uncommitted transaction and, under repeatable
  // read, holds a gap lock that stalls every writer's outbox insert until that transaction ends.
  auto isolation = co_await c.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", timeout);
  if (!isolation) co_return std::nullopt;
  auto begin = co_await c.query("START TRANSACTION", timeout);
  if (!begin) co_return std::nullopt;
  co_return std::move(*lease);
}

}  // namespace

// One pass: the connection that holds its transaction (and the cursor's row lock), and what it
// has delivered so far.
struct Relay::Pass {
  db::Connection& c;
  std::chrono::milliseconds timeout;
  const std::string& site;
  simdjson::dom::parser parser{};
  std::string first_deliveries{};  // ids delivered for the first time: marked done at the end
  std::size_t delivered = 0;
  bool failed = false;
  std::chrono::steady_clock::time_point page_read{};  // when the page was read (the holes it showed date from it)

  asio::awaitable<void> rollback() {
    if (!c.broken()) co_await c.query("ROLLBACK", timeout);
  }
};

asio::awaitable<std::size_t> Relay::pass() {
  ++stats_.passes;
  const auto started = std::chrono::steady_clock::now();
  auto lease = co_await begin_pass(pool_);
  if (!lease) co_return 0;
  Pass p{**lease, pool_.query_timeout(), invalidator_.site()};

  auto top = co_await outbox_top(p);
  if (!top) co_return 0;
  const std::uint64_t target = std::stoull(*top);
  auto cursor_id = co_await lock_cursor(p, *top, started);
  if (!cursor_id) co_return 0;
  // Ids at or below the cursor are settled, by this instance or another of the site.
  if (scanned_ < *cursor_id) scanned_ = *cursor_id;
  missing_.erase(missing_.begin(), missing_.upper_bound(*cursor_id));

  if (!co_await deliver_late(p)) co_return 0;
  if (!co_await deliver_page(p)) co_return 0;
  expire_holes(p.page_read);
  co_await move_cursor(p);

  stats_.delivered += p.delivered;
  // Caught up: everything that was in the outbox when this pass began is delivered.
  if (!p.failed && scanned_ >= target && on_caught_up_) on_caught_up_(started);
  if (p.failed)
    log::warn("outbox relay: delivery failed; ", p.delivered, " row(s) delivered, the rest retried in ", interval_.count(), " ms");
  co_await purge();
  co_return p.delivered;
}

void Relay::complain(const db::Error& e) {
  if (std::chrono::steady_clock::now() - last_complaint_ > std::chrono::minutes(1)) {
    last_complaint_ = std::chrono::steady_clock::now();
    // 1146: no such table.
    log::warn("outbox relay: ", e.message, e.server_code == 1146 ? " (are sql/outbox.sql and sql/triggers.sql applied?)" : "");
  }
}

// The newest outbox id as the database spells it: what this pass has to reach to be caught up.
asio::awaitable<std::optional<std::string>> Relay::outbox_top(Pass& p) {
  auto top = co_await p.c.query("SELECT COALESCE(MAX(`id`), 0) FROM `pitstop_outbox`", p.timeout);
  if (!top || top->rows.empty() || !top->rows[0][0]) {
    if (!top) complain(top.error());
    co_await p.rollback();
    co_return std::nullopt;
  }
  co_return *top->rows[0][0];
}

// The site's cursor, locked for the rest of the pass.
asio::awaitable<std::optional<std::uint64_t>> Relay::lock_cursor(Pass& p, const std::string& top,
                                                                 std::chrono::steady_clock::time_point started) {
  const db::Param site_param[] = {std::string_view(p.site)};
  // Instances of one site take turns on its cursor.
  auto cursor = co_await p.c.execute("SELECT `last_id` FROM `pitstop_outbox_cursor` WHERE `site` = ? FOR UPDATE", site_param, p.timeout);
  if (!cursor) {
    complain(cursor.error());
    co_await p.rollback();
    co_return std::nullopt;
  }
  if (cursor->rows.empty() || !cursor->rows[0][0]) {
    // A new site starts at the end of the outbox: it has cached nothing older.
    const db::Param init_params[] = {std::string_view(p.site), std::string_view(top)};
    auto init = co_await p.c.execute("INSERT IGNORE INTO `pitstop_outbox_cursor` (`site`, `last_id`, `updated`) VALUES (?, ?, NOW(6))",
                                     init_params, p.timeout);
    if (!init) complain(init.error());
    auto done = co_await p.c.query(init ? "COMMIT" : "ROLLBACK", p.timeout);
    if (init && done && on_caught_up_) on_caught_up_(started);
    co_return std::nullopt;
  }
  co_return std::stoull(*cursor->rows[0][0]);
}

// Ids are taken when a transaction inserts, visible when it commits: a row can appear behind
// rows already read. The holes seen so far are looked for again on every pass.
asio::awaitable<bool> Relay::deliver_late(Pass& p) {
  if (missing_.empty()) co_return true;
  std::string ids;
  std::size_t n = 0;
  // Appended piecewise: `"," + std::to_string(…)` here trips GCC 12's -Wstringop-overflow.
  for (auto it = missing_.begin(); it != missing_.end() && n < 1000; ++it, ++n) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(it->first);
  }
  // The ids are integers of this process, not client data.
  auto late = co_await p.c.query(kColumns + std::string("WHERE `id` IN (") + ids + ") ORDER BY `id`", p.timeout);
  if (!late) {
    complain(late.error());
    co_await p.rollback();
    co_return false;
  }
  for (const auto& row : late->rows) {
    if (!row[0] || !row[1]) continue;
    if (!co_await deliver_row(p, row)) {
      p.failed = true;
      break;
    }
    missing_.erase(std::stoull(*row[0]));
  }
  co_return true;
}

// The next page after the highest id read; the ids it skips become holes.
asio::awaitable<bool> Relay::deliver_page(Pass& p) {
  const std::string after_text = std::to_string(scanned_);
  const db::Param after[] = {std::string_view(after_text)};
  auto rows = co_await p.c.execute(kColumns + std::string("WHERE `id` > ? ORDER BY `id` LIMIT ") + std::to_string(kPage), after, p.timeout);
  if (!rows) {
    complain(rows.error());
    co_await p.rollback();
    co_return false;
  }
  behind_ = rows->rows.size() >= kPage;
  const auto now = std::chrono::steady_clock::now();
  p.page_read = now;
  for (const auto& row : rows->rows) {
    if (p.failed) break;
    if (!row[0] || !row[1]) continue;
    const std::uint64_t id = std::stoull(*row[0]);
    if (!co_await deliver_row(p, row)) {
      p.failed = true;
      break;
    }
    // The ids skipped on the way are transactions not committed yet, or rolled back.
    for (std::uint64_t hole = scanned_ + 1; hole < id; ++hole) {
      if (missing_.size() >= kMaxHoles) {
        log::warn("outbox relay: more than ", kMaxHoles, " outbox ids not committed yet; ids up to ", id - 1,
                  " are taken as rolled back");
        break;
      }
      missing_.emplace(hole, now);
    }
    scanned_ = id;
  }
  co_return true;
}

// One outbox row (id, tags, source, created, site, done) to Redis, unless it is this site's own
// and already delivered; false when the delivery failed.
asio::awaitable<bool> Relay::deliver_row(Pass& p, const Row& row) {
  const bool done = row[5] && *row[5] == "1";
  // This site's own writes were delivered by their writer; the others' and the triggers'
  // rows, and this site's undelivered ones (its writer died or Redis failed), are delivered.
  if (done && row[4] && *row[4] == p.site) co_return true;
  Event e;
  e.id = "outbox:" + *row[0];
  e.source = row[2] ? *row[2] : "";
  e.time = row[3] ? *row[3] : "";
  if (e.time.size() >= 19) {
    e.time[10] = 'T';
    e.time += 'Z';
  }
  simdjson::padded_string padded(*row[1]);
  simdjson::dom::array tags;
  if (!p.parser.parse(padded).get(tags)) {
    for (auto t : tags) {
      std::string_view s;
      if (!t.get(s)) e.tags.emplace_back(s);  // NULL columns give null tags: nothing to drop
    }
  }
  if (auto d = co_await invalidator_.deliver(e); d.ec) {
    ++stats_.failures;
    co_return false;
  }
  if (on_delivered_) on_delivered_(e);
  ++p.delivered;
  // `done` means "delivered to its writer's site": another site's row stays as it is, or its
  // own relay would take it for delivered (to this site's Redis, not to its own).
  const bool mine_or_trigger = !row[4] || *row[4] == p.site;
  if (!done && mine_or_trigger) p.first_deliveries += (p.first_deliveries.empty() ? "" : ",") + *row[0];
  co_return true;
}

// A hole older than the grace is a rolled-back transaction (or one so long that its writes
// are older than the caches' answers would be anyway).
void Relay::expire_holes(std::chrono::steady_clock::time_point now) {
  std::size_t expired = 0;
  for (auto it = missing_.begin(); it != missing_.end();) {
    if (now - it->second > gap_grace_) {
      it = missing_.erase(it);
      ++expired;
    } else {
      ++it;
    }
  }
  if (expired) log::debug("outbox relay: ", expired, " outbox id(s) never committed within ", gap_grace_.count(), " s: rolled back");
}

// The cursor to below the oldest hole, this site's first deliveries marked done, and the end of
// the transaction; any of it failing marks the pass failed.
asio::awaitable<void> Relay::move_cursor(Pass& p) {
  const std::uint64_t last = missing_.empty() ? scanned_ : missing_.begin()->first - 1;
  const std::string last_text = std::to_string(last);
  const db::Param move[] = {std::string_view(last_text), std::string_view(p.site)};
  auto moved = co_await p.c.execute("UPDATE `pitstop_outbox_cursor` SET `last_id` = ?, `updated` = NOW(6) WHERE `site` = ?", move, p.timeout);
  if (!moved) p.failed = true;
  if (!p.first_deliveries.empty()) {
    // The ids are the table's own integers, not client data.
    // By primary key only, the order in which a writer's own UPDATE takes its locks; done_at
    // is assigned before done, so it sees the old value.
    auto u = co_await p.c.query("UPDATE `pitstop_outbox` SET `done_at` = IF(`done` = 1, `done_at`, NOW(6)), `done` = 1 WHERE `id` IN (" +
                                    p.first_deliveries + ")",
                                p.timeout);
    if (!u) p.failed = true;
  }
  auto commit = co_await p.c.query(p.failed && !moved ? "ROLLBACK" : "COMMIT", p.timeout);
  if (!commit) p.failed = true;
}

// Delivered rows are kept a while for inspection, then purged in small batches.
asio::awaitable<void> Relay::purge() {
  if (const auto t = std::chrono::steady_clock::now(); t - last_purge_ > std::chrono::minutes(1)) {
    last_purge_ = t;
    const std::string cutoff = sql_time(std::chrono::system_clock::now() - retention_);
    const db::Param p[] = {std::string_view(cutoff)};
    co_await pool_.execute("DELETE FROM `pitstop_outbox` WHERE `created` < ? LIMIT 5000", p, false);
  }
}

}  // namespace pitstop::invalidation
