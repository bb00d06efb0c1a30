#include "proxy/invalidation/binlog.hpp"

// mysql.h first: mariadb_rpl.h uses its types.
#include <mysql.h>
//
#include <mariadb_rpl.h>
#include <sys/socket.h>

#include <algorithm>
#include <future>
#include <mutex>
#include <memory>
#include <optional>
#include <random>
#include <string_view>

#include "proxy/log/log.hpp"

namespace pitstop::invalidation {

namespace {

constexpr std::string_view kOutbox = "pitstop_outbox";
// pitstop_outbox's columns as sql/outbox.sql orders them: id, tags, source, site, created, done,
// done_at.
constexpr unsigned kIdColumn = 0, kSiteColumn = 3, kColumns = 7;

std::string_view view(const MARIADB_STRING& s) { return {s.str, s.length}; }

struct Closer {
  void operator()(MYSQL* m) const { mysql_close(m); }
};
using Connection = std::unique_ptr<MYSQL, Closer>;

// One query's first row, or nullopt (the error is in mysql_error).
std::optional<std::vector<std::optional<std::string>>> first_row(MYSQL* m, const char* sql) {
  if (mysql_query(m, sql) != 0) return std::nullopt;
  MYSQL_RES* res = mysql_store_result(m);
  if (!res) return std::nullopt;
  std::vector<std::optional<std::string>> out;
  if (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long* lens = mysql_fetch_lengths(res);
    for (unsigned i = 0; i < mysql_num_fields(res); ++i) out.push_back(row[i] ? std::optional<std::string>(std::string(row[i], lens[i])) : std::nullopt);
  }
  mysql_free_result(res);
  return out;
}

bool is_write_rows(const MARIADB_RPL_EVENT* ev) {
  return ev->event_type == WRITE_ROWS_EVENT_V1 || ev->event_type == WRITE_ROWS_EVENT || ev->event_type == WRITE_ROWS_COMPRESSED_EVENT_V1;
}

}  // namespace

// Everything the thread touches: shared with it, so that a thread left behind by stop() uses
// nothing that is gone.
struct BinlogWatch::State {
  BinlogSettings settings;
  std::function<void(std::uint64_t)> wake;
  std::mutex wake_m;  // wake() never runs once stop() has set `stopped` under it
  bool stopped = false;
  std::atomic<bool> stop{false};
  std::atomic<int> socket{-1};  // shut down by stop() to end a blocking read
  std::atomic<bool> following{false};
  std::atomic<std::uint64_t> wakes{0};
  std::atomic<std::uint64_t> own_rows{0};
  std::promise<void> ended;

  enum class End { retry, unavailable, stopped };
  void run();
  End follow();
  void notify(std::uint64_t id) {
    std::lock_guard lock(wake_m);
    if (stopped) return;
    wakes.fetch_add(1, std::memory_order_relaxed);
    wake(id);
  }
};

BinlogWatch::BinlogWatch(BinlogSettings settings, std::function<void(std::uint64_t)> wake)
    : mode_(settings.mode), state_(std::make_shared<State>()) {
  state_->settings = std::move(settings);
  state_->wake = std::move(wake);
}

BinlogWatch::~BinlogWatch() { stop(); }

bool BinlogWatch::following() const { return state_->following.load(std::memory_order_relaxed); }
std::uint64_t BinlogWatch::wakes() const { return state_->wakes.load(std::memory_order_relaxed); }
std::uint64_t BinlogWatch::own_rows() const { return state_->own_rows.load(std::memory_order_relaxed); }

void BinlogWatch::start() {
  if (mode_ == "off" || thread_.joinable()) return;
  thread_ = std::thread([state = state_] {
    state->run();
    state->ended.set_value();
  });
}

void BinlogWatch::stop() {
  if (!thread_.joinable()) return;
  State& st = *state_;
  st.stop = true;
  {
    std::lock_guard lock(st.wake_m);
    st.stopped = true;
  }
  // Ends a read that blocks in the library; the descriptor stays the library's to close.
  if (int fd = st.socket.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  if (st.ended.get_future().wait_for(std::chrono::milliseconds(500)) == std::future_status::ready) thread_.join();
  else thread_.detach();  // connecting, within its connect timeout; it holds the state
}

void BinlogWatch::State::run() {
  auto backoff = std::chrono::milliseconds(500);
  bool complained = false;
  while (!stop) {
    const End end = follow();
    following = false;
    if (end == End::stopped || stop) return;
    if (end == End::unavailable && settings.mode == "auto") {
      log::info("binary log not used (invalidation.binlog is auto): writes around pitstop are found by the outbox relay every ",
                "relay interval");
      return;
    }
    if (!complained) log::warn("binary log: reconnecting (writes around pitstop are found by the outbox relay meanwhile)");
    complained = true;
    // Sleep in small steps, so that stop() is not kept waiting.
    const auto until = std::chrono::steady_clock::now() + backoff;
    while (!stop && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
  }
}

BinlogWatch::State::End BinlogWatch::State::follow() {
  const auto& s = settings.server;
  Connection m(mysql_init(nullptr));
  if (!m) return End::retry;
  const unsigned protocol = MYSQL_PROTOCOL_TCP;
  const unsigned connect_timeout = 5;
  // Three heartbeats missed: the server or the link is gone.
  const unsigned read_timeout = static_cast<unsigned>(3 * settings.heartbeat.count());
  mysql_optionsv(m.get(), MYSQL_OPT_PROTOCOL, &protocol);
  mysql_optionsv(m.get(), MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
  mysql_optionsv(m.get(), MYSQL_OPT_READ_TIMEOUT, &read_timeout);
  if (!mysql_real_connect(m.get(), s.host.c_str(), s.user.c_str(), s.password.c_str(), s.database.c_str(), s.port, nullptr, 0)) {
    log::debug("binary log: cannot connect: ", mysql_error(m.get()));
    return stop ? End::stopped : End::retry;
  }
  auto unavailable = [&](const std::string& why) {
    if (settings.mode == "on") log::warn("binary log: ", why);
    else log::info("binary log: ", why);
    return End::unavailable;
  };
  auto vars = first_row(m.get(), "SELECT @@log_bin, @@binlog_format");
  if (!vars || vars->size() != 2) return End::retry;
  if ((*vars)[0].value_or("0") != "1") return unavailable("the server writes none (log_bin is off)");
  if ((*vars)[1].value_or("") != "ROW") return unavailable("binlog_format is " + (*vars)[1].value_or("?") + ", not ROW");
  auto status = first_row(m.get(), "SHOW MASTER STATUS");
  if (!status || status->size() < 2 || !(*status)[0] || !(*status)[1])
    return unavailable(std::string("cannot read the position (") + mysql_error(m.get()) +
                       "); grant the user REPLICATION SLAVE and BINLOG MONITOR (sql/binlog_grants.sql)");
  const std::string file = *(*status)[0];
  const unsigned long position = std::stoul(*(*status)[1]);
  const std::string heartbeat = "SET @master_heartbeat_period = " + std::to_string(settings.heartbeat.count() * 1000000000LL);
  for (const std::string& q : {heartbeat, std::string("SET @master_binlog_checksum = @@global.binlog_checksum"),
                               std::string("SET @mariadb_slave_capability = 4")})
    if (mysql_query(m.get(), q.c_str()) != 0) return End::retry;

  MARIADB_RPL* rpl = mariadb_rpl_init(m.get());
  if (!rpl) return End::retry;
  std::unique_ptr<MARIADB_RPL, void (*)(MARIADB_RPL*)> rpl_owner(rpl, [](MARIADB_RPL* r) { mariadb_rpl_close(r); });
  // A replica's id must be unique among the server's replicas: a random one, away from small
  // numbers that real servers use.
  std::random_device rd;
  const unsigned server_id = (1u << 30) + rd() % (1u << 30);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, file.c_str(), file.size());
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, position);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, server_id);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, 0u);
  if (mariadb_rpl_open(rpl) != 0) return unavailable(std::string("cannot follow it: ") + mariadb_rpl_error(rpl));
  socket = static_cast<int>(mysql_get_socket(m.get()));
  struct Forget {
    std::atomic<int>& fd;
    ~Forget() { fd = -1; }
  } forget{socket};
  if (stop) return End::stopped;
  following = true;
  log::info("binary log: following from ", file, ":", position, "; writes around pitstop wake the outbox relay as they commit");
  // Whatever committed while no one was following is the relay's: a pass now.
  notify(0);

  using EventPtr = std::unique_ptr<MARIADB_RPL_EVENT, void (*)(MARIADB_RPL_EVENT*)>;
  auto free_event = [](MARIADB_RPL_EVENT* e) { mariadb_free_rpl_event(e); };
  EventPtr outbox_map(nullptr, free_event);
  std::uint64_t pending = 0;  // the highest outbox id of the open transaction to deliver
  while (!stop) {
    EventPtr ev(mariadb_rpl_fetch(rpl, nullptr), free_event);
    if (!ev) break;
    if (ev->event_type == TABLE_MAP_EVENT) {
      const auto& map = ev->event.table_map;
      if (view(map.database) == s.database && view(map.table) == kOutbox && map.column_count == kColumns) outbox_map = std::move(ev);
      continue;
    }
    if (is_write_rows(ev.get()) && outbox_map && ev->event.rows.table_id == outbox_map->event.table_map.table_id) {
      for (MARIADB_RPL_ROW* row = mariadb_rpl_extract_rows(rpl, outbox_map.get(), ev.get()); row; row = row->next) {
        if (row->column_count != kColumns) continue;
        const MARIADB_RPL_VALUE& site = row->columns[kSiteColumn];
        // This site's own rows are delivered by their writer (the relay catches those it could not).
        if (!site.is_null && view(site.val.str) == settings.site) {
          own_rows.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        pending = std::max<std::uint64_t>(pending, row->columns[kIdColumn].val.ull);
      }
      continue;
    }
    if (ev->event_type == XID_EVENT && pending) {
      notify(pending);
      pending = 0;
    }
  }
  if (stop) return End::stopped;
  log::debug("binary log: ", mariadb_rpl_error(rpl));
  return End::retry;
}

}  // namespace pitstop::invalidation
