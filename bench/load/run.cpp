// The event loops: one io_context per thread; closed-loop users or an open-loop arrival schedule
// with a pool of connections; every request on its own keep-alive connection, one at a time.
#include "bench/load/run.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "bench/load/checks.hpp"
#include "proxy/json/writer.hpp"

namespace pitstop::load {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

void RequestStats::merge(const RequestStats& o) {
  requests += o.requests, errors += o.errors, limited += o.limited, hits += o.hits, misses += o.misses;
  latency.merge(o.latency);
}

namespace {
// The steps of the writes, labelled after the workload's own requests in Stats::by_request.
enum Step : int { kOrderPost, kOrderGet, kOrderPut, kBinPut, kCheckHistory, kCheckParts, kSteps };
constexpr const char* kStepNames[kSteps] = {"new_order: POST order", "status_update: GET order", "status_update: PUT order",
                                            "stock_move: PUT bin", "check: vehicle_history", "check: parts_availability"};
}  // namespace

std::vector<std::string> request_names(const Workload& w) {
  std::vector<std::string> names;
  for (const auto& r : w.requests) names.push_back(r.name);
  for (const char* n : kStepNames) names.emplace_back(n);
  return names;
}

void Stats::merge(const Stats& o) {
  requests += o.requests;
  responses += o.responses;
  latency.merge(o.latency);
  for (std::size_t i = 0; i < status.size(); ++i) status[i] += o.status[i];
  connect += o.connect, timeout += o.timeout, io += o.io, client += o.client, server += o.server;
  overload += o.overload, limited += o.limited, hits += o.hits, misses += o.misses;
  read_hits += o.read_hits, read_misses += o.read_misses;
  writes += o.writes, checks += o.checks, stale += o.stale, unchecked += o.unchecked, retries += o.retries;
  for (const auto& e : o.stale_examples)
    if (stale_examples.size() < 5) stale_examples.push_back(e);
  if (by_request.size() < o.by_request.size()) by_request.resize(o.by_request.size());
  for (std::size_t i = 0; i < o.by_request.size(); ++i) by_request[i].merge(o.by_request[i]);
}

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// Connect failures back off so that a dead server costs a few attempts a second, not a hot loop.
constexpr milliseconds kBackoffFirst{50};
constexpr milliseconds kBackoffMax{1000};
constexpr std::size_t kStaleExamples = 5;
constexpr std::size_t kBacklogPerConnection = 10;
constexpr std::uint32_t kHeaderLimit = 64 << 10;
constexpr std::uint64_t kBodyLimit = 64 << 20;
constexpr std::size_t kVehicleHistoryLimit = 500;  // sql/queries/vehicle_history.sql: LIMIT 500

// The ERP API the write kinds use (Frappe's resource API and the workshop's methods).
constexpr std::string_view kOrders = "/api/resource/Service%20Order";
constexpr std::string_view kBins = "/api/resource/Bin/";
constexpr std::string_view kVehicleHistory = "/api/method/universal_workshop.api.get_vehicle_history?vehicle=";
constexpr std::string_view kPartsAvailability = "/api/method/universal_workshop.api.get_parts_availability?item_code=";

volatile std::sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

enum class Fail { none, connect, timeout, io, overload };
enum class CacheResult { none, hit, miss };
enum class Verdict { fresh, stale, unchecked };

struct Reply {
  Fail fail = Fail::none;
  int status = 0;
  CacheResult cache = CacheResult::none;
  std::string body;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9211: a list of caches, each "name; param; param=value"; any cache that says `hit` makes the
// answer a hit, otherwise any `fwd=` but `fwd=method` (a write passing through) makes it a miss.
CacheResult cache_result(std::string_view v) {
  CacheResult out = CacheResult::none;
  bool quoted = false, first = true;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= v.size(); ++i) {
    const char c = i < v.size() ? v[i] : ',';
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
      continue;
    }
    if (c == '"') {
      quoted = true;
      continue;
    }
    if (c != ';' && c != ',') continue;
    const std::string_view item = trim(v.substr(start, i - start));
    if (!first) {
      const auto eq = item.find('=');
      const std::string_view name = trim(item.substr(0, eq));
      const std::string_view value = eq == std::string_view::npos ? std::string_view{} : trim(item.substr(eq + 1));
      if (name == "hit") out = CacheResult::hit;
      else if (name == "fwd" && value != "method" && out != CacheResult::hit) out = CacheResult::miss;
    }
    first = c == ',';
    start = i + 1;
  }
  return out;
}

class Worker;
class Slot;

// What the threads share: the schedule, the stop switch and the --requests count.
struct Shared {
  explicit Shared(const Plan& p) : plan(p) {}
  const Plan& plan;
  std::vector<tcp::endpoint> endpoints;
  Clock::time_point start, measure_start, end;
  std::atomic<std::uint64_t> measured{0};
  std::atomic<bool> stopping{false};
  std::atomic<Clock::rep> stopped_at{0};
  std::atomic<int> stale_printed{0};
  std::vector<std::unique_ptr<Worker>> workers;
  void stop(Clock::time_point at);
};

// Read by the progress line on the main thread; the figures themselves stay thread-local.
struct alignas(64) Progress {
  std::atomic<std::uint64_t> requests{0}, answered{0}, errors{0}, limited{0};
};

class Connection;

class Worker {
 public:
  Worker(Shared& shared, std::size_t index)
      : shared_(shared), plan_(shared.plan), wl_(*shared.plan.workload), index_(index),
        ioc_(std::make_unique<asio::io_context>(1)) {
    stats_.by_request.resize(wl_.requests.size() + kSteps);
  }

  void start();
  void run() { ioc_->run(); }
  void stop() { ioc_->stop(); }
  // Destroys the coroutines (and the sockets and timers they own) while this object, which they
  // point to, is still whole.
  void teardown() {
    tearing_down_ = true;
    connections_.clear();
    ioc_.reset();
  }

  bool measuring(Clock::time_point now) const {
    return now >= shared_.measure_start && now < shared_.end && !shared_.stopping.load(std::memory_order_relaxed);
  }
  // `tag`: index into Stats::by_request, or -1 (a dropped arrival).
  bool record(const Reply& r, Clock::time_point from, int tag);
  void verdict(bool counted, Verdict v, const std::string& text);
  void arrive(Clock::time_point intended);
  const Credential& next_credential();

  Shared& shared_;
  const Plan& plan_;
  const Workload& wl_;
  std::size_t index_;
  Stats stats_;
  Progress progress_;
  std::vector<Connection*> connections_;  // for the deadline sweeper
  std::deque<Clock::time_point> backlog_;  // open loop: arrivals waiting for a connection
  std::vector<Slot*> idle_;                // open loop: connections waiting for an arrival
  std::size_t backlog_bound_ = 0;
  std::uint64_t next_user_ = 0;
  bool tearing_down_ = false;
  std::unique_ptr<asio::io_context> ioc_;
};

void Shared::stop(Clock::time_point at) {
  if (!stopping.exchange(true)) stopped_at.store(at.time_since_epoch().count());
  for (auto& w : workers) w->stop();
}

// One keep-alive connection to the target, one request at a time. Deadlines are enforced by the
// worker's sweeper (cheaper than a timer per request): past it the socket's operations are
// cancelled and the connection is closed, to be reopened by the next request.
class Connection {
 public:
  explicit Connection(Worker& w) : w_(w), socket_(*w.ioc_) { w_.connections_.push_back(this); }
  // Connections live as long as the run; only a teardown ends them, all at once.
  ~Connection() {
    if (!w_.tearing_down_) std::erase(w_.connections_, this);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  asio::awaitable<void> exchange(const std::string& wire, bool head, bool idempotent, bool want_body, Reply& out);

  void expire() {
    timed_out_ = true;
    deadline_ = Clock::time_point::max();
    error_code ec;
    socket_.cancel(ec);
  }
  Clock::time_point deadline_ = Clock::time_point::max();

 private:
  asio::awaitable<error_code> connect();
  void close() {
    error_code ec;
    socket_.close(ec);
    open_ = false;
    buffer_.clear();
  }

  Worker& w_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  bool open_ = false;
  bool timed_out_ = false;
  std::uint64_t served_ = 0;  // answers on the current connection
};

asio::awaitable<error_code> Connection::connect() {
  error_code ec = asio::error::host_not_found;
  for (const auto& ep : w_.shared_.endpoints) {
    error_code ignored;
    socket_.close(ignored);
    auto [cec] = co_await socket_.async_connect(ep, kToken);
    ec = cec;
    if (!ec || timed_out_) break;
  }
  if (ec) co_return ec;
  socket_.set_option(tcp::no_delay(true), ec);
  open_ = true;
  served_ = 0;
  buffer_.clear();
  // Beast reads into what the buffer has room for (at least 512 bytes): without room, a 200 kB
  // answer took hundreds of recv calls.
  buffer_.reserve(64 * 1024);
  co_return error_code{};
}

asio::awaitable<void> Connection::exchange(const std::string& wire, bool head, bool idempotent, bool want_body, Reply& out) {
  out.fail = Fail::none;
  out.status = 0;
  out.cache = CacheResult::none;
  out.body.clear();
  timed_out_ = false;
  deadline_ = Clock::now() + milliseconds(w_.plan_.timeout_ms);
  for (int attempt = 0;; ++attempt) {
    if (!open_) {
      if (error_code ec = co_await connect()) {
        close();
        deadline_ = Clock::time_point::max();
        out.fail = Fail::connect;
        co_return;
      }
    }
    const bool reused = served_ > 0;
    auto [ec, written] = co_await asio::async_write(socket_, asio::buffer(wire), kToken);
    bool got_some = false;
    if (!ec) {
      parser_.emplace();
      parser_->header_limit(kHeaderLimit);
      parser_->body_limit(kBodyLimit);
      if (head) parser_->skip(true);
      auto [rec, n] = co_await bhttp::async_read(socket_, buffer_, *parser_, kToken);
      ec = rec;
      got_some = parser_->got_some();
      if (!ec) {
        auto& res = parser_->get();
        out.status = static_cast<int>(res.result_int());
        out.cache = cache_result(res["Cache-Status"]);
        if (want_body) out.body = std::move(res.body());
        ++served_;
        if (!res.keep_alive()) close();
        deadline_ = Clock::time_point::max();
        co_return;
      }
    }
    const bool timed_out = timed_out_;
    close();
    // A server may close an idle keep-alive connection just as a request goes out on it: a GET
    // is resent once on a new connection, as browsers do (counted as a retry, not hidden).
    const bool closed_under_us = ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                                 ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
    if (!timed_out && attempt == 0 && reused && idempotent && !got_some && closed_under_us) {
      if (w_.measuring(Clock::now())) ++w_.stats_.retries;
      continue;
    }
    deadline_ = Clock::time_point::max();
    out.fail = timed_out ? Fail::timeout : Fail::io;
    co_return;
  }
}

// One writer/reader: draws requests and keys, and owns a partition of the documents it writes.
class Actor {
 public:
  Actor(Worker& w, std::uint64_t partition, std::uint64_t partitions, std::uint64_t seed)
      : w_(w), wl_(w.wl_), rng_(seed), ranks_(wl_.keys.size()) {
    const Writes& wr = wl_.writes;
    auto block = [&](int key) {
      const std::uint64_t n = wl_.keys[static_cast<std::size_t>(key)].count;
      return Block{partition * n / partitions + 1, (partition + 1) * n / partitions};
    };
    if (wr.new_order) vehicles_ = block(wr.new_order->vehicle_key);
    if (wr.status_update) orders_ = block(wr.status_update->order_key);
    if (wr.stock_move) {
      items_ = block(wr.stock_move->item_key);
      const auto every = wr.stock_move->non_stock_every;
      // A block of one non-stock item has no bins to move.
      if (!items_.empty() && every && items_.lo == items_.hi && items_.lo % every == 0) items_ = Block{};
    }
  }

  // One operation: a read, or a write with the reads that go with it. The first request's
  // latency counts from `intended`. Returns how the last request failed (connect failures make
  // the caller back off).
  asio::awaitable<Fail> operate(Connection& c, Clock::time_point intended, const Credential& cred) {
    cred_ = &cred;
    const Writes& wr = wl_.writes;
    if (wr.op_chance > 0 && rng_.uniform() < wr.op_chance) {
      const double a = wr.new_order && !vehicles_.empty() ? wr.new_order->weight : 0;
      const double b = wr.status_update && !orders_.empty() ? wr.status_update->weight : 0;
      const double d = wr.stock_move && !items_.empty() ? wr.stock_move->weight : 0;
      if (a + b + d > 0) {
        const double u = rng_.uniform() * (a + b + d);
        if (u < a) co_return co_await new_order(c, intended);
        if (u < a + b) co_return co_await status_update(c, intended);
        co_return co_await stock_move(c, intended);
      }
    }
    co_return co_await read(c, intended);
  }

 private:
  struct Block {
    std::uint64_t lo = 1, hi = 0;
    bool empty() const { return hi < lo; }
  };

  asio::awaitable<Fail> send(Connection& c, int tag, std::string_view method, std::string_view target,
                             std::string_view body, Clock::time_point from, bool want_body, bool& counted) {
    wire_.clear();
    wire_.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ").append(w_.plan_.host_header);
    wire_.append("\r\n").append(cred_->header).append("User-Agent: pitstop-load\r\nAccept: application/json\r\n");
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH")
      wire_.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n");
    wire_.append("\r\n").append(body);
    const bool idempotent = method == "GET" || method == "HEAD";
    co_await c.exchange(wire_, method == "HEAD", idempotent, want_body, reply_);
    counted = w_.record(reply_, from, tag);
    co_return reply_.fail;
  }

  int step(Step s) const { return static_cast<int>(wl_.requests.size()) + s; }

  void expand(const Template& t, bool url, std::string& out) {
    for (const auto& p : t.pieces) {
      if (p.key < 0) {
        out += p.literal;
        continue;
      }
      const auto k = static_cast<std::size_t>(p.key);
      if (ranks_[k] == 0) ranks_[k] = wl_.keys[k].draw(rng_);
      scratch_.clear();
      wl_.keys[k].append_value(scratch_, ranks_[k]);
      if (url) append_url_component(out, scratch_);
      else json::append_escaped(out, scratch_);
    }
  }

  asio::awaitable<Fail> read(Connection& c, Clock::time_point intended) {
    const std::size_t index = wl_.pick_request(rng_);
    const RequestSpec& r = wl_.requests[index];
    std::fill(ranks_.begin(), ranks_.end(), 0);
    target_.clear();
    body_.clear();
    expand(r.path, true, target_);
    if (!r.body.empty()) expand(r.body, false, body_);
    bool counted = false;
    co_return co_await send(c, static_cast<int>(index), r.method, target_, body_, intended, false, counted);
  }

  std::string value(int key, std::uint64_t rank) const {
    std::string s;
    wl_.keys[static_cast<std::size_t>(key)].append_value(s, rank);
    return s;
  }

  // POST a new order for one of our vehicles; its history must then list the order.
  asio::awaitable<Fail> new_order(Connection& c, Clock::time_point intended) {
    const NewOrder& no = *wl_.writes.new_order;
    const std::uint64_t v = rng_.between(vehicles_.lo, vehicles_.hi);
    // The sample data's rule: vehicle n belongs to customer ((n-1) mod customers) + 1.
    const std::uint64_t customer = (v - 1) % wl_.keys[static_cast<std::size_t>(no.customer_key)].count + 1;
    const std::string vehicle = value(no.vehicle_key, v);
    const auto& dates = wl_.keys[static_cast<std::size_t>(no.date_key)];
    body_.assign("{\"customer\":\"");
    json::append_escaped(body_, value(no.customer_key, customer));
    body_.append("\",\"vehicle\":\"");
    json::append_escaped(body_, vehicle);
    body_.append("\",\"service_date\":\"");
    json::append_escaped(body_, value(no.date_key, dates.draw(rng_)));
    body_.append("\",\"service_type\":\"");
    json::append_escaped(body_, no.service_type);
    body_.append("\",\"status\":\"");
    json::append_escaped(body_, no.status);
    body_.append("\"}");
    bool counted = false;
    Fail f = co_await send(c, step(kOrderPost), "POST", kOrders, body_, intended, true, counted);
    if (f != Fail::none || reply_.status != 200) co_return f;
    if (counted) ++w_.stats_.writes;
    const auto name = checks::created_name(reply_.body);
    target_.assign(kVehicleHistory);
    append_url_component(target_, vehicle);
    if (!name) {
      w_.verdict(counted, Verdict::unchecked, {});
      co_return f;
    }
    f = co_await send(c, step(kCheckHistory), "GET", target_, {}, Clock::now(), true, counted);
    if (f != Fail::none || reply_.status != 200) {
      w_.verdict(counted, Verdict::unchecked, {});
      co_return f;
    }
    const auto listed = checks::find_order(reply_.body, *name);
    if (listed.found) w_.verdict(counted, Verdict::fresh, {});
    else if (!listed.parsed || listed.count >= kVehicleHistoryLimit) w_.verdict(counted, Verdict::unchecked, {});
    else
      w_.verdict(counted, Verdict::stale,
                 "new order " + *name + " for " + vehicle + ": GET " + target_ + " lists " + std::to_string(listed.count) +
                     " orders, expected one named " + *name);
    co_return f;
  }

  // GET one of our orders (to learn its vehicle), PUT the next status; the vehicle's history
  // must then show the order with that status.
  asio::awaitable<Fail> status_update(Connection& c, Clock::time_point intended) {
    const StatusUpdate& su = *wl_.writes.status_update;
    const std::string order = value(su.order_key, rng_.between(orders_.lo, orders_.hi));
    std::string doc_target(kOrders);
    doc_target += '/';
    append_url_component(doc_target, order);
    bool counted = false;
    Fail f = co_await send(c, step(kOrderGet), "GET", doc_target, {}, intended, true, counted);
    if (f != Fail::none || reply_.status != 200) co_return f;
    const auto doc = checks::order_doc(reply_.body);
    if (!doc) co_return f;
    auto at = std::find(su.statuses.begin(), su.statuses.end(), doc->status);
    const std::string& next = at == su.statuses.end() || at + 1 == su.statuses.end() ? su.statuses.front() : *(at + 1);
    body_.assign("{\"status\":\"");
    json::append_escaped(body_, next);
    body_.append("\"}");
    f = co_await send(c, step(kOrderPut), "PUT", doc_target, body_, Clock::now(), false, counted);
    if (f != Fail::none || reply_.status != 200) co_return f;
    if (counted) ++w_.stats_.writes;
    target_.assign(kVehicleHistory);
    append_url_component(target_, doc->vehicle);
    f = co_await send(c, step(kCheckHistory), "GET", target_, {}, Clock::now(), true, counted);
    if (f != Fail::none || reply_.status != 200) {
      w_.verdict(counted, Verdict::unchecked, {});
      co_return f;
    }
    const auto listed = checks::find_order(reply_.body, order);
    if (listed.found && listed.status == next) w_.verdict(counted, Verdict::fresh, {});
    else if (listed.found)
      w_.verdict(counted, Verdict::stale,
                 order + " set to \"" + next + "\": GET " + target_ + " shows status \"" + listed.status + "\"");
    else if (!listed.parsed || listed.count >= kVehicleHistoryLimit) w_.verdict(counted, Verdict::unchecked, {});
    else
      w_.verdict(counted, Verdict::stale,
                 order + " set to \"" + next + "\": GET " + target_ + " lists " + std::to_string(listed.count) +
                     " orders, none named " + order);
    co_return f;
  }

  // PUT a new quantity into one bin of one of our stock items; the item's availability must then
  // show that quantity in that warehouse.
  asio::awaitable<Fail> stock_move(Connection& c, Clock::time_point intended) {
    const StockMove& sm = *wl_.writes.stock_move;
    std::uint64_t item = rng_.between(items_.lo, items_.hi);
    if (sm.non_stock_every && item % sm.non_stock_every == 0) item = item < items_.hi ? item + 1 : item - 1;
    const std::uint64_t wh = rng_.between(1, sm.warehouses.size());
    const std::uint64_t args[2] = {item, wh};
    std::string bin;
    sm.bin_format.append(bin, args);
    // Never the quantity we wrote last into this bin: an unchanged value would pass the check
    // even if the read were stale.
    std::uint64_t& last = last_qty_[item * 256 + wh];
    std::uint64_t qty = rng_.between(1, sm.max_qty);
    if (qty == last) qty = qty % sm.max_qty + 1;
    last = qty;
    body_.assign("{\"actual_qty\": ").append(std::to_string(qty)).append("}");
    target_.assign(kBins);
    append_url_component(target_, bin);
    bool counted = false;
    Fail f = co_await send(c, step(kBinPut), "PUT", target_, body_, intended, false, counted);
    if (f != Fail::none || reply_.status != 200) co_return f;
    if (counted) ++w_.stats_.writes;
    const std::string& warehouse = sm.warehouses[wh - 1];
    target_.assign(kPartsAvailability);
    append_url_component(target_, value(sm.item_key, item));
    f = co_await send(c, step(kCheckParts), "GET", target_, {}, Clock::now(), true, counted);
    if (f != Fail::none || reply_.status != 200) {
      w_.verdict(counted, Verdict::unchecked, {});
      co_return f;
    }
    const auto stock = checks::find_stock(reply_.body, warehouse);
    if (!stock.parsed) {
      w_.verdict(counted, Verdict::unchecked, {});
    } else if (!stock.found) {
      w_.verdict(counted, Verdict::stale, bin + " set to actual_qty " + std::to_string(qty) + ": GET " + target_ +
                                              " has no stock row for \"" + warehouse + "\"");
    } else if (std::fabs(stock.qty - static_cast<double>(qty)) > 1e-6) {
      char seen[64];
      std::snprintf(seen, sizeof seen, "%.17g", stock.qty);
      w_.verdict(counted, Verdict::stale, bin + " set to actual_qty " + std::to_string(qty) + ": GET " + target_ +
                                              " shows actual_qty " + seen + " in \"" + warehouse + "\"");
    } else {
      w_.verdict(counted, Verdict::fresh, {});
    }
    co_return f;
  }

  Worker& w_;
  const Workload& wl_;
  Rng rng_;
  Block vehicles_, orders_, items_;
  std::vector<std::uint64_t> ranks_;  // this request's draw per key (0: not drawn yet)
  std::string target_, body_, wire_, scratch_;
  std::unordered_map<std::uint64_t, std::uint64_t> last_qty_;
  const Credential* cred_ = nullptr;
  Reply reply_;
};

std::uint64_t actor_seed(const Plan& plan, std::uint64_t index) { return plan.seed ^ (0x9e3779b97f4a7c15ULL * (index + 1)); }

// Open loop: a pooled connection takes arrivals from the backlog, or waits idle for one.
class Slot {
 public:
  Slot(Worker& w, std::uint64_t index)
      : w_(w), conn_(w), actor_(w, index, w.plan_.connections, actor_seed(w.plan_, index)), timer_(*w.ioc_) {}

  void hand(Clock::time_point intended) {
    arrival_ = intended;
    timer_.cancel();
  }

  asio::awaitable<void> loop() {
    auto backoff = kBackoffFirst;
    for (;;) {
      Clock::time_point intended;
      if (!w_.backlog_.empty()) {
        intended = w_.backlog_.front();
        w_.backlog_.pop_front();
      } else {
        w_.idle_.push_back(this);
        timer_.expires_at(Clock::time_point::max());
        co_await timer_.async_wait(kToken);
        intended = arrival_;
      }
      const Fail f = co_await actor_.operate(conn_, intended, w_.next_credential());
      if (f == Fail::connect) {
        timer_.expires_after(backoff);
        co_await timer_.async_wait(kToken);
        backoff = std::min(backoff * 2, kBackoffMax);
      } else {
        backoff = kBackoffFirst;
      }
    }
  }

 private:
  Worker& w_;
  Connection conn_;
  Actor actor_;
  asio::steady_timer timer_;
  Clock::time_point arrival_;
};

asio::awaitable<void> open_slot(Worker& w, std::uint64_t index) {
  Slot s(w, index);
  co_await s.loop();
}

// Arrivals at fixed intervals from the start, whatever the answers do: latency counts from these
// intended times, so a slow server cannot hide its queueing (coordinated omission).
asio::awaitable<void> arrivals(Worker& w) {
  const Plan& plan = w.plan_;
  asio::steady_timer timer(*w.ioc_);
  const double interval = 1e9 * static_cast<double>(plan.threads) / plan.rate;
  const double phase = 1e9 * static_cast<double>(w.index_) / plan.rate;  // threads interleave
  const auto due = [&](std::uint64_t k) {
    return w.shared_.start + nanoseconds(static_cast<std::int64_t>(phase + static_cast<double>(k) * interval));
  };
  for (std::uint64_t k = 0;;) {
    if (due(k) > Clock::now()) {
      timer.expires_at(due(k));
      co_await timer.async_wait(kToken);
    }
    const auto now = Clock::now();
    for (; due(k) <= now; ++k) w.arrive(due(k));
  }
}

asio::awaitable<void> closed_user(Worker& w, std::uint64_t vu) {
  const Plan& plan = w.plan_;
  Connection conn(w);
  Actor actor(w, vu, plan.users, actor_seed(plan, vu));
  asio::steady_timer timer(*w.ioc_);
  const Credential& cred = plan.credentials[vu % plan.credentials.size()];
  // Users start staggered (100 us apart: thousands of simultaneous connects overflow a listen
  // backlog and wait a second for the SYN to be resent) and, with think time, at a random point
  // of it, so that they do not stay in step.
  const std::uint64_t local = vu - w.index_ * plan.users / plan.threads;
  auto delay = std::chrono::microseconds(100 * local);
  if (plan.think_ms) delay += std::chrono::microseconds(Rng(actor_seed(plan, vu) + 1).below(plan.think_ms * 1000));
  if (delay.count()) {
    timer.expires_after(delay);
    co_await timer.async_wait(kToken);
  }
  auto backoff = kBackoffFirst;
  for (;;) {
    const Fail f = co_await actor.operate(conn, Clock::now(), cred);
    if (f == Fail::connect) {
      timer.expires_after(backoff);
      co_await timer.async_wait(kToken);
      backoff = std::min(backoff * 2, kBackoffMax);
      continue;
    }
    backoff = kBackoffFirst;
    if (plan.think_ms) {
      timer.expires_after(milliseconds(plan.think_ms));
      co_await timer.async_wait(kToken);
    }
  }
}

asio::awaitable<void> sweep(Worker& w) {
  asio::steady_timer timer(*w.ioc_);
  const auto tick = std::clamp(milliseconds(w.plan_.timeout_ms / 20), milliseconds(1), milliseconds(100));
  for (;;) {
    timer.expires_after(tick);
    co_await timer.async_wait(kToken);
    const auto now = Clock::now();
    for (Connection* c : w.connections_)
      if (c->deadline_ <= now) c->expire();
  }
}

asio::awaitable<void> finish(Worker& w) {
  asio::steady_timer timer(*w.ioc_, w.shared_.end);
  co_await timer.async_wait(kToken);
  w.shared_.stop(w.shared_.end);
}

// No exceptions are expected (every operation reports an error_code); if one escapes anyway,
// let it end the thread's run loudly rather than silently lose a user.
void rethrow(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
}

void Worker::start() {
  const std::uint64_t t = plan_.threads, i = index_;
  if (!plan_.open) {
    for (std::uint64_t vu = i * plan_.users / t; vu < (i + 1) * plan_.users / t; ++vu)
      asio::co_spawn(*ioc_, closed_user(*this, vu), rethrow);
  } else {
    const std::uint64_t lo = i * plan_.connections / t, hi = (i + 1) * plan_.connections / t;
    backlog_bound_ = kBacklogPerConnection * (hi - lo);
    next_user_ = i;
    for (std::uint64_t s = lo; s < hi; ++s) asio::co_spawn(*ioc_, open_slot(*this, s), rethrow);
    asio::co_spawn(*ioc_, arrivals(*this), rethrow);
  }
  asio::co_spawn(*ioc_, sweep(*this), rethrow);
  asio::co_spawn(*ioc_, finish(*this), rethrow);
}

const Credential& Worker::next_credential() {
  // Round-robin over the users, interleaved between threads.
  const std::uint64_t vu = next_user_ % plan_.users;
  next_user_ += plan_.threads;
  return plan_.credentials[vu % plan_.credentials.size()];
}

void Worker::arrive(Clock::time_point intended) {
  if (!idle_.empty()) {
    Slot* s = idle_.back();
    idle_.pop_back();
    s->hand(intended);
  } else if (backlog_.size() < backlog_bound_) {
    backlog_.push_back(intended);
  } else {
    Reply dropped;
    dropped.fail = Fail::overload;
    record(dropped, intended, -1);
  }
}

bool Worker::record(const Reply& r, Clock::time_point from, int tag) {
  const auto now = Clock::now();
  const bool error = r.fail != Fail::none || (r.status >= 400 && r.status != 429);
  progress_.requests.fetch_add(1, std::memory_order_relaxed);
  if (r.fail == Fail::none) progress_.answered.fetch_add(1, std::memory_order_relaxed);
  if (error) progress_.errors.fetch_add(1, std::memory_order_relaxed);
  if (r.status == 429) progress_.limited.fetch_add(1, std::memory_order_relaxed);
  if (!measuring(now)) return false;
  if (plan_.max_requests) {
    const auto n = shared_.measured.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n > plan_.max_requests) return false;
    if (n == plan_.max_requests) shared_.stop(now);  // this handler still runs to its end
  }
  Stats& s = stats_;
  ++s.requests;
  RequestStats* per = tag >= 0 ? &s.by_request[static_cast<std::size_t>(tag)] : nullptr;
  if (per) {
    ++per->requests;
    if (error) ++per->errors;
  }
  switch (r.fail) {
    case Fail::connect: ++s.connect; return true;
    case Fail::timeout: ++s.timeout; return true;
    case Fail::io: ++s.io; return true;
    case Fail::overload: ++s.overload; return true;
    case Fail::none: break;
  }
  ++s.responses;
  ++s.status[static_cast<std::size_t>(std::clamp(r.status, 0, 999))];
  const auto ns = static_cast<std::uint64_t>(std::max<Clock::rep>(0, nanoseconds(now - from).count()));
  s.latency.record(ns);
  if (r.status == 429) ++s.limited;
  else if (r.status >= 500) ++s.server;
  else if (r.status >= 400) ++s.client;
  if (r.cache == CacheResult::hit) ++s.hits;
  else if (r.cache == CacheResult::miss) ++s.misses;
  // The workload's own reads, apart from the reads a write step makes (the order it loads, the
  // check after it), which look at just-invalidated answers by design.
  if (tag >= 0 && static_cast<std::size_t>(tag) < wl_.requests.size()) {
    if (r.cache == CacheResult::hit) ++s.read_hits;
    else if (r.cache == CacheResult::miss) ++s.read_misses;
  }
  if (per) {
    per->latency.record(ns);
    if (r.status == 429) ++per->limited;
    if (r.cache == CacheResult::hit) ++per->hits;
    else if (r.cache == CacheResult::miss) ++per->misses;
  }
  return true;
}

void Worker::verdict(bool counted, Verdict v, const std::string& text) {
  if (!counted) return;
  switch (v) {
    case Verdict::unchecked: ++stats_.unchecked; return;
    case Verdict::fresh: ++stats_.checks; return;
    case Verdict::stale: break;
  }
  ++stats_.checks;
  ++stats_.stale;
  if (stats_.stale_examples.size() < kStaleExamples) stats_.stale_examples.push_back(text);
  if (shared_.stale_printed.fetch_add(1) < static_cast<int>(kStaleExamples))
    std::fprintf(stderr, "pitstop-load: stale read: %s\n", text.c_str());
}

}  // namespace

bool run(const Plan& plan, Outcome& out, std::string& error) {
  Shared shared(plan);
  {
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    error_code ec;
    auto results = resolver.resolve(plan.host, plan.port, ec);
    if (ec || results.empty()) {
      error = "cannot resolve " + plan.host + ": " + (ec ? ec.message() : "no address");
      return false;
    }
    for (const auto& r : results) shared.endpoints.push_back(r.endpoint());
  }
  for (std::size_t i = 0; i < plan.threads; ++i) shared.workers.push_back(std::make_unique<Worker>(shared, i));

  shared.start = Clock::now();
  shared.measure_start = shared.start + nanoseconds(static_cast<std::int64_t>(plan.warmup_s * 1e9));
  const double window = plan.duration_s > 0 ? plan.duration_s : 3600.0;
  shared.end = shared.measure_start + nanoseconds(static_cast<std::int64_t>(window * 1e9));
  for (auto& w : shared.workers) w->start();

  g_interrupted = 0;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::mutex mu;
  std::condition_variable cv;
  std::size_t done = 0;
  std::vector<std::thread> threads;
  for (auto& w : shared.workers) {
    threads.emplace_back([&, wp = w.get()] {
      wp->run();
      std::lock_guard lock(mu);
      ++done;
      cv.notify_all();
    });
  }

  // Progress once a second on stderr: cumulative counts since the start, warm-up included; rps is
  // answers per second over the last tick.
  auto next_tick = shared.start + std::chrono::seconds(1);
  auto last_tick = shared.start;
  std::uint64_t last_answered = 0;
  for (;;) {
    std::unique_lock lock(mu);
    const auto wake = std::min(next_tick, Clock::now() + milliseconds(100));
    cv.wait_until(lock, wake, [&] { return done == threads.size(); });
    if (done == threads.size()) break;
    lock.unlock();
    const auto now = Clock::now();
    if (g_interrupted && !shared.stopping.load()) {
      out.interrupted = true;
      std::signal(SIGINT, SIG_DFL);  // a second ^C ends at once
      std::signal(SIGTERM, SIG_DFL);
      shared.stop(now);
    }
    if (now >= next_tick) {
      std::uint64_t requests = 0, answered = 0, errors = 0, limited = 0;
      for (auto& w : shared.workers) {
        requests += w->progress_.requests.load(std::memory_order_relaxed);
        answered += w->progress_.answered.load(std::memory_order_relaxed);
        errors += w->progress_.errors.load(std::memory_order_relaxed);
        limited += w->progress_.limited.load(std::memory_order_relaxed);
      }
      const double elapsed = std::chrono::duration<double>(now - shared.start).count();
      const double since = std::chrono::duration<double>(now - last_tick).count();
      std::fprintf(stderr, "pitstop-load: %6.1fs %-7s requests %10llu  rps %9.0f  errors %8llu  429s %8llu\n", elapsed,
                   now < shared.measure_start ? "warm-up" : "run", static_cast<unsigned long long>(requests),
                   static_cast<double>(answered - last_answered) / since, static_cast<unsigned long long>(errors),
                   static_cast<unsigned long long>(limited));
      last_answered = answered;
      last_tick = now;
      while (next_tick <= now) next_tick += std::chrono::seconds(1);
    }
  }
  for (auto& t : threads) t.join();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  for (auto& w : shared.workers) w->teardown();
  for (auto& w : shared.workers) out.stats.merge(w->stats_);

  Clock::time_point stop = shared.end;
  if (const auto at = shared.stopped_at.load(); shared.stopping.load() && at != 0)
    stop = std::min(stop, Clock::time_point(Clock::duration(at)));
  out.measured_s = std::max(0.0, std::chrono::duration<double>(stop - shared.measure_start).count());
  return true;
}

}  // namespace pitstop::load
