#include "proxy/app/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/crypto.h>

#include "proxy/app/app.hpp"
#include "proxy/app/worker.hpp"
#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::app {

namespace asio = boost::asio;
using metrics::Type;

namespace {

// How long a scrape waits for a busy worker; what did not answer by then is left out (and said).
constexpr auto kCollectWait = std::chrono::seconds(2);

struct Gather {
  explicit Gather(asio::io_context& ioc, int n) : pending(n), wake(ioc) {}
  metrics::Sample merged;
  int pending;
  asio::steady_timer wake;
};

asio::awaitable<void> sample_worker(Worker* w, std::shared_ptr<Gather> g, asio::io_context* admin) {
  metrics::Sample s = co_await w->sample();
  asio::post(*admin, [g, s = std::move(s)] {
    g->merged.merge(s);
    if (--g->pending == 0) g->wake.cancel();
  });
}

http::Response plain(unsigned status, std::string body, std::string_view type = "text/plain; charset=utf-8") {
  http::Response r;
  r.status = status;
  r.content_type = std::string(type);
  r.body = std::move(body);
  r.set_header("Cache-Control", "no-store");
  return r;
}

double seconds_since(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::system_clock::now() - t).count();
}

}  // namespace

Admin::Admin(asio::io_context& ioc, Shared& shared, std::vector<Worker*> workers)
    : ioc_(ioc), shared_(shared), workers_(std::move(workers)) {}

bool Admin::authorized(const http::Request& req) const {
  const std::string& token = shared_.cfg.admin.token;
  if (token.empty()) return true;  // only allowed on loopback (config refuses it elsewhere)
  const auto presented = req.header(http::Request::Field::authorization);
  static constexpr std::string_view kBearer = "Bearer ";
  if (presented.size() != kBearer.size() + token.size() || !presented.starts_with(kBearer)) return false;
  return CRYPTO_memcmp(presented.data() + kBearer.size(), token.data(), token.size()) == 0;
}

asio::awaitable<metrics::Sample> Admin::collect() {
  auto g = std::make_shared<Gather>(ioc_, static_cast<int>(workers_.size()));
  for (Worker* w : workers_) asio::co_spawn(w->ioc(), sample_worker(w, g, &ioc_), asio::detached);
  g->wake.expires_after(kCollectWait);
  if (g->pending > 0) co_await g->wake.async_wait(asio::as_tuple(asio::use_awaitable));
  metrics::Sample out = std::move(g->merged);
  const int missing = std::max(0, g->pending);
  g->pending = -1;  // late answers merge into the moved-from sample, which nobody reads
  out.add("pitstop_scrape_workers_missing", Type::gauge, "Workers that did not answer this scrape in time", {}, missing);
  add_process(out);
  co_return out;
}

void Admin::add_process(metrics::Sample& s) const {
  const auto l1 = shared_.l1.stats();
  s.add("pitstop_l1_bytes", Type::gauge, "Bytes held by the in-process cache (L1)", {}, static_cast<double>(l1.bytes));
  s.add("pitstop_l1_max_bytes", Type::gauge, "cache.l1_bytes: the L1 bound", {}, static_cast<double>(shared_.cfg.cache.l1_bytes));
  s.add("pitstop_l1_entries", Type::gauge, "Entries in L1", {}, static_cast<double>(l1.entries));
  s.add("pitstop_l1_evictions_total", Type::counter, "Entries evicted from L1 to stay within its bound", {}, static_cast<double>(l1.evictions));
  s.add("pitstop_l1_lookups_total", Type::counter, "L1 lookups, by result", {{"result", "hit"}}, static_cast<double>(l1.hits));
  s.add("pitstop_l1_lookups_total", Type::counter, "L1 lookups, by result", {{"result", "miss"}}, static_cast<double>(l1.misses));
  s.add("pitstop_l1_usable", Type::gauge, "1 while this instance can prove it hears invalidations (L1 in use)", {},
        shared_.trust.l1_usable() ? 1 : 0);
  s.add("pitstop_redis_trusted", Type::gauge, "1 while Redis entries are trusted (the outbox relay has caught up)", {},
        shared_.trust.l2_trusted() ? 1 : 0);
  if (const auto* log = shared_.access_log.get()) {
    s.add("pitstop_access_log_lines_total", Type::counter, "Access log lines, by fate", {{"result", "written"}},
          static_cast<double>(log->written()));
    s.add("pitstop_access_log_lines_total", Type::counter, "Access log lines, by fate", {{"result", "dropped"}},
          static_cast<double>(log->dropped()));
  }
  s.add("pitstop_config_reloads_total", Type::counter, "Reloads (SIGHUP, POST /admin/reload), by result", {{"result", "ok"}},
        static_cast<double>(shared_.reloads_ok.load()));
  s.add("pitstop_config_reloads_total", Type::counter, "Reloads (SIGHUP, POST /admin/reload), by result", {{"result", "failed"}},
        static_cast<double>(shared_.reloads_failed.load()));
  s.add("pitstop_config_loaded_time_seconds", Type::gauge, "When the running config and rules were loaded (Unix time)", {},
        std::chrono::duration<double>(shared_.live()->loaded_at.time_since_epoch()).count());
  s.add("pitstop_start_time_seconds", Type::gauge, "When this process started (Unix time)", {},
        std::chrono::duration<double>(shared_.started.time_since_epoch()).count());
  s.add("pitstop_build_info", Type::gauge, "The running version", {{"version", PITSTOP_VERSION}}, 1);
}

asio::awaitable<http::Response> Admin::handle(const http::Request& req) {
  const auto path = req.path();
  const bool get = req.method() == http::Method::get || req.method() == http::Method::head;
  if (path == "/metrics") {
    if (!get) co_return http::error_response(405, "MethodNotAllowed", "Use GET");
    const metrics::Sample s = co_await collect();
    co_return plain(200, s.text(), "text/plain; version=0.0.4; charset=utf-8");
  }
  if (!authorized(req)) {
    auto r = http::error_response(401, "AuthenticationError", "The admin listener needs its token: Authorization: Bearer <admin.token>");
    r.set_header("WWW-Authenticate", "Bearer realm=\"pitstop admin\"");
    co_return r;
  }
  if (path == "/admin/status") {
    if (!get) co_return http::error_response(405, "MethodNotAllowed", "Use GET");
    co_return co_await status();
  }
  if (path == "/admin/reload") {
    if (req.method() != http::Method::post) co_return http::error_response(405, "MethodNotAllowed", "Use POST");
    co_return reloaded(reload(shared_));
  }
  co_return http::error_response(404, "DoesNotExistError", "Not an admin endpoint: /metrics, /admin/status, /admin/reload");
}

http::Response Admin::reloaded(const Reloaded& r) {
  std::string body;
  json::Writer out(body);
  out.begin_object().member("ok", r.ok);
  if (r.ok) out.member("digest", r.digest);
  else out.member("error", r.error);
  out.key("needs_restart").begin_array();
  for (const auto& p : r.needs_restart) out.value(p);
  out.end_array().end_object();
  return plain(r.ok ? 200 : 422, std::move(body), "application/json");
}

asio::awaitable<http::Response> Admin::status() {
  const metrics::Sample s = co_await collect();
  const auto& cfg = shared_.cfg;
  std::string body;
  json::Writer out(body);
  out.begin_object();
  out.member("version", PITSTOP_VERSION).member("instance", shared_.instance);
  out.member("started", log::utc_text(shared_.started, 'T', 3, true)).member("uptime_s", seconds_since(shared_.started));
  const auto live = shared_.live();
  out.key("config").begin_object();
  out.member("source", cfg.source).member("rules", live->rules->source()).member("digest", live->digest);
  out.member("loaded", log::utc_text(live->loaded_at, 'T', 3, true));
  out.member("reloads", shared_.reloads_ok.load()).member("failed_reloads", shared_.reloads_failed.load());
  if (!shared_.last_reload_error.empty()) out.member("last_reload_error", shared_.last_reload_error);
  out.end_object();
  out.key("workers").begin_array();
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const std::string w = std::to_string(i);
    out.begin_object().member("index", static_cast<std::uint64_t>(i));
    out.member("requests", s.value("pitstop_worker_requests_total", {{"worker", w}}));
    out.end_object();
  }
  out.end_array();
  out.member("open_connections", s.value("pitstop_open_connections"));
  auto up = [&](const char* server) { return s.value("pitstop_up", {{"server", server}}) > 0; };
  out.key("redis").begin_object();
  out.key("cache").begin_object().member("up", up("redis_cache")).member("trusted", shared_.trust.l2_trusted()).end_object();
  out.key("queue").begin_object().member("up", up("redis_queue")).member("hears_events", shared_.trust.l1_usable()).end_object();
  out.end_object();
  out.key("mariadb").begin_object().member("up", up("mariadb")).member("outbox_backlog", s.value("pitstop_outbox_backlog")).end_object();
  out.key("upstream").begin_object().member("configured", cfg.upstream.enabled());
  if (cfg.upstream.enabled()) {
    out.member("url", cfg.upstream.url);
    out.member("in_use", s.value("pitstop_upstream_connections", {{"state", "in_use"}}));
    out.member("idle", s.value("pitstop_upstream_connections", {{"state", "idle"}}));
    out.member("connect_failures", s.value("pitstop_upstream_connect_failures_total"));
  }
  out.end_object();
  out.key("l1").begin_object();
  out.member("bytes", s.value("pitstop_l1_bytes")).member("max_bytes", s.value("pitstop_l1_max_bytes"));
  out.member("entries", s.value("pitstop_l1_entries")).member("evictions", s.value("pitstop_l1_evictions_total"));
  out.member("usable", shared_.trust.l1_usable());
  out.end_object();
  out.key("access_log").begin_object();
  if (const auto* log = shared_.access_log.get())
    out.member("destination", log->destination()).member("written", log->written()).member("dropped", log->dropped());
  out.end_object();
  out.end_object();
  co_return plain(200, std::move(body), "application/json");
}

}  // namespace pitstop::app
