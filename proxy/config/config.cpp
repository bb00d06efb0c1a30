#include "proxy/config/config.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "proxy/config/urls.hpp"

namespace pitstop::config {
namespace {

// ---------------------------------------------------------------------------------------------
// A config file as a tree that remembers where each value came from (the file or a variable).

struct Node {
  enum class Kind { null, boolean, integer, floating, string, array, object };
  Kind kind = Kind::null;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<std::pair<std::string, Node>> members;
  std::vector<Node> items;
  std::string origin;

  Node* find(std::string_view k) {
    for (auto& [name, child] : members)
      if (name == k) return &child;
    return nullptr;
  }
  const Node* find(std::string_view k) const { return const_cast<Node*>(this)->find(k); }
};

const char* kind_name(Node::Kind k) {
  switch (k) {
    case Node::Kind::null: return "null";
    case Node::Kind::boolean: return "a boolean";
    case Node::Kind::integer: return "an integer";
    case Node::Kind::floating: return "a number with a fraction";
    case Node::Kind::string: return "a string";
    case Node::Kind::array: return "an array";
    case Node::Kind::object: return "an object";
  }
  return "?";
}

[[noreturn]] void fail(const std::string& origin, const std::string& path, const std::string& what) {
  throw ConfigError(origin + ": " + path + ": " + what);
}

std::string child_path(const std::string& parent, std::string_view key) {
  std::string p = parent;
  p += '.';
  p.append(key);
  return p;
}

Node from_dom(simdjson::dom::element e, const std::string& origin, const std::string& path) {
  Node n;
  n.origin = origin;
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      n.kind = Node::Kind::object;
      std::set<std::string, std::less<>> seen;
      simdjson::dom::object obj = e.get_object().value_unsafe();
      for (auto field : obj) {
        std::string key(field.key);
        if (!seen.insert(key).second)
          fail(origin, child_path(path, key), "the key appears twice; keep one of them");
        n.members.emplace_back(key, from_dom(field.value, origin, child_path(path, key)));
      }
      break;
    }
    case simdjson::dom::element_type::ARRAY: {
      n.kind = Node::Kind::array;
      std::size_t idx = 0;
      simdjson::dom::array arr = e.get_array().value_unsafe();
      for (auto item : arr)
        n.items.push_back(from_dom(item, origin, path + "[" + std::to_string(idx++) + "]"));
      break;
    }
    case simdjson::dom::element_type::STRING:
      n.kind = Node::Kind::string;
      n.s = std::string(e.get_string().value_unsafe());
      break;
    case simdjson::dom::element_type::INT64:
      n.kind = Node::Kind::integer;
      n.i = e.get_int64().value_unsafe();
      break;
    case simdjson::dom::element_type::UINT64:
      fail(origin, path, "the number is too large");
    case simdjson::dom::element_type::DOUBLE:
      n.kind = Node::Kind::floating;
      n.d = e.get_double().value_unsafe();
      break;
    case simdjson::dom::element_type::BOOL:
      n.kind = Node::Kind::boolean;
      n.b = e.get_bool().value_unsafe();
      break;
    case simdjson::dom::element_type::NULL_VALUE:
      n.kind = Node::Kind::null;
      break;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// The schema: every settable leaf, its type, range and documentation. The same table drives
// reading, the unknown-key check, environment overrides and the README's variable list.

enum class Type { string, integer, boolean, string_list };

struct Scalar {
  std::int64_t i = 0;
  bool b = false;
  std::string s;
  std::vector<std::string> list;
};

using Setter = std::function<void(Config&, const Scalar&, const std::string& wildcard)>;

struct Field {
  std::vector<std::string> path;  // "*" matches any key (category names)
  Type type;
  std::int64_t min = 0;
  std::int64_t max = 0;
  std::string help;
  Setter set;
};

std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    auto dot = p.find('.', start);
    out.emplace_back(p.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

using std::chrono::milliseconds;
using std::chrono::seconds;

Field str(std::string_view path, std::string help, std::function<void(Config&, const std::string&)> f) {
  return {split_path(path), Type::string, 0, 0, std::move(help),
          [f](Config& c, const Scalar& v, const std::string&) { f(c, v.s); }};
}

Field num(std::string_view path, std::int64_t min, std::int64_t max, std::string help,
          std::function<void(Config&, std::int64_t)> f) {
  return {split_path(path), Type::integer, min, max, std::move(help),
          [f](Config& c, const Scalar& v, const std::string&) { f(c, v.i); }};
}

Field redis_field(const char* which, const char* leaf, std::int64_t min, std::int64_t max,
                  std::string help, std::function<void(Redis&, std::int64_t)> f) {
  std::string p = std::string("redis.") + which + "." + leaf;
  bool cache = std::string_view(which) == "cache";
  return num(p, min, max, std::move(help),
             [f, cache](Config& c, std::int64_t v) { f(cache ? c.redis_cache : c.redis_queue, v); });
}

constexpr std::int64_t kHour = 3600 * 1000;

const std::vector<Field>& schema() {
  static const std::vector<Field> fields = [] {
    std::vector<Field> f;
    f.push_back(str("listen", "address and port to listen on (host:port; port 0 picks a free one)",
                    [](Config& c, const std::string& v) {
                      std::string why;
                      if (!parse_host_port(v, c.listen, why)) throw std::invalid_argument(why);
                    }));
    f.push_back(num("workers", 0, 256, "worker threads, each with its own event loop (0 = one per core)",
                    [](Config& c, std::int64_t v) { c.workers = static_cast<int>(v); }));
    f.push_back(str("site", "site name; part of every cache key",
                    [](Config& c, const std::string& v) {
                      if (v.empty() || v.size() > 255) throw std::invalid_argument("must be 1..255 characters");
                      c.site = v;
                    }));
    f.push_back(str("log_level", "debug, info, warn or error", [](Config& c, const std::string& v) {
      if (v != "debug" && v != "info" && v != "warn" && v != "error")
        throw std::invalid_argument("must be one of debug, info, warn, error");
      c.log_level = v;
    }));
    f.push_back(str("log.access",
                    "access log, one JSON line per request: \"\" (off), \"-\" (stdout) or a file (reopened on SIGUSR1)",
                    [](Config& c, const std::string& v) {
                      if (v.size() > 4096) throw std::invalid_argument("must be a path of at most 4096 characters");
                      c.access_log = v;
                    }));
    f.push_back(str("admin.listen",
                    "admin listener for /metrics and /admin/ (host:port, default 127.0.0.1:9145; \"off\" for none)",
                    [](Config& c, const std::string& v) {
                      if (v == "off") {
                        c.admin.enabled = false;
                        return;
                      }
                      std::string why;
                      if (!parse_host_port(v, c.admin.listen, why)) throw std::invalid_argument(why);
                      c.admin.enabled = true;
                    }));
    f.push_back(str("admin.token",
                    "Bearer token the admin listener asks for (all but /metrics); required when it is not on loopback",
                    [](Config& c, const std::string& v) {
                      if (!v.empty() && v.size() < 16) throw std::invalid_argument("must be at least 16 characters (or empty)");
                      if (v.size() > 512) throw std::invalid_argument("must be at most 512 characters");
                      c.admin.token = v;
                    }));
    for (const char* which : {"cache", "queue"}) {
      bool cache = std::string_view(which) == "cache";
      f.push_back(str(std::string("redis.") + which + ".url",
                      std::string("Redis ") + (cache ? "\"cache\" (L2 entries, tags)" : "\"queue\" (limits, events)") +
                          " URL: redis://[[user]:password@]host:port[/db]",
                      [cache](Config& c, const std::string& v) {
                        std::string why;
                        Redis& r = cache ? c.redis_cache : c.redis_queue;
                        if (!parse_redis_url(v, r, why)) throw std::invalid_argument(why);
                      }));
      f.push_back(redis_field(which, "connect_timeout_ms", 1, kHour, "deadline for connecting (ms)",
                              [](Redis& r, std::int64_t v) { r.connect_timeout = milliseconds(v); }));
      f.push_back(redis_field(which, "command_timeout_ms", 1, kHour,
                              "deadline for each command (ms); a late reply drops the connection",
                              [](Redis& r, std::int64_t v) { r.command_timeout = milliseconds(v); }));
      f.push_back(redis_field(which, "reconnect_max_backoff_ms", 10, kHour,
                              "longest wait between reconnection attempts (ms)",
                              [](Redis& r, std::int64_t v) { r.reconnect_max_backoff = milliseconds(v); }));
    }
    f.push_back(str("mariadb.primary", "MariaDB primary: mariadb://user:password@host:port/database",
                    [](Config& c, const std::string& v) {
                      std::string why;
                      if (!parse_mariadb_url(v, c.mariadb.primary, why)) throw std::invalid_argument(why);
                      c.mariadb.primary_url = v;
                    }));
    f.push_back({split_path("mariadb.replicas"), Type::string_list, 0, 64,
                 "read replicas, same form as primary (environment: comma-separated)",
                 [](Config& c, const Scalar& v, const std::string&) {
                   c.mariadb.replicas.clear();
                   c.mariadb.replica_urls = v.list;
                   for (const auto& url : v.list) {
                     MariaDb m;
                     std::string why;
                     if (!parse_mariadb_url(url, m, why)) throw std::invalid_argument("\"" + url + "\": " + why);
                     c.mariadb.replicas.push_back(m);
                   }
                 }});
    f.push_back(num("mariadb.pool_size", 1, 1000, "connections per worker and server",
                    [](Config& c, std::int64_t v) { c.mariadb.pool_size = static_cast<int>(v); }));
    f.push_back(num("mariadb.connect_timeout_ms", 1, kHour, "deadline for connecting (ms)",
                    [](Config& c, std::int64_t v) { c.mariadb.connect_timeout = milliseconds(v); }));
    f.push_back(num("mariadb.query_timeout_ms", 1, kHour,
                    "deadline for each query (ms); a late query's connection is discarded",
                    [](Config& c, std::int64_t v) { c.mariadb.query_timeout = milliseconds(v); }));
    f.push_back(num("mariadb.acquire_timeout_ms", 1, kHour,
                    "longest wait for a free pooled connection (ms)",
                    [](Config& c, std::int64_t v) { c.mariadb.acquire_timeout = milliseconds(v); }));
    struct T { const char* key; milliseconds Timeouts::*member; const char* help; };
    for (T t : {T{"header_read_ms", &Timeouts::header_read, "deadline for a request's header block, from its first byte (ms)"},
                T{"body_read_ms", &Timeouts::body_read, "deadline for a request body (ms)"},
                T{"idle_keepalive_ms", &Timeouts::idle_keepalive, "idle keep-alive connections are closed after this (ms)"},
                T{"write_ms", &Timeouts::write, "deadline for writing a response (ms)"},
                T{"drain_ms", &Timeouts::drain, "on SIGTERM/SIGINT, longest wait for in-flight requests (ms)"},
                T{"readiness_ms", &Timeouts::readiness, "deadline for each /readyz check (ms)"},
                T{"origin_ms", &Timeouts::origin, "longest wait for an origin answer, requests collapsed behind one fetch included (ms)"}}) {
      auto member = t.member;
      f.push_back(num(std::string("timeouts.") + t.key, 1, 24 * kHour, t.help,
                      [member](Config& c, std::int64_t v) { c.timeouts.*member = milliseconds(v); }));
    }
    struct L { const char* key; std::size_t Limits::*member; std::int64_t min, max; const char* help; };
    for (L l : {L{"max_header_bytes", &Limits::max_header_bytes, 1024, 1 << 20, "largest request header block; larger gets 431"},
                L{"max_url_bytes", &Limits::max_url_bytes, 256, 1 << 20, "longest request target; longer gets 414"},
                L{"max_body_bytes", &Limits::max_body_bytes, 0, 1LL << 30, "largest request body; larger gets 413"},
                L{"max_connections", &Limits::max_connections, 1, 1 << 22, "open client connections, all workers together; more get 503"},
                L{"max_requests_per_connection", &Limits::max_requests_per_connection, 0, 1LL << 40, "requests served on one connection before it is closed (0 = no limit)"},
                L{"max_list_rows", &Limits::max_list_rows, 1, 1 << 24, "most rows a resource list answers when asked for all (limit 0); more is a 417"}}) {
      auto member = l.member;
      f.push_back(num(std::string("limits.") + l.key, l.min, l.max, l.help,
                      [member](Config& c, std::int64_t v) { c.limits.*member = static_cast<std::size_t>(v); }));
    }
    f.push_back(str("auth.encryption_key", "the site's Fernet key (encryption_key in the ERP's site_config.json) that decrypts API secrets",
                    [](Config& c, const std::string& v) {
                      const bool b64url = v.size() == 44 && v.back() == '=' &&
                                          v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43;
                      if (!b64url) throw std::invalid_argument("expected a Fernet key: 44 characters of url-safe base64 ending in '='");
                      c.auth.encryption_key = v;
                    }));
    f.push_back(str("auth.session_expiry", "how long a session (sid cookie) lives after its last use, as Frappe's session_expiry (HH:MM:SS)",
                    [](Config& c, const std::string& v) {
                      int h = 0, m = 0, sec = 0;
                      char tail = 0;
                      int n = std::sscanf(v.c_str(), "%d:%d:%d%c", &h, &m, &sec, &tail);
                      if ((n != 2 && n != 3) || h < 0 || h > 100000 || m < 0 || m > 59 || sec < 0 || sec > 59 || (h == 0 && m == 0 && sec == 0))
                        throw std::invalid_argument("expected HH:MM:SS, e.g. 06:00:00");
                      c.auth.session_expiry = seconds(h * 3600LL + m * 60LL + sec);
                    }));
    f.push_back(num("auth.identity_ttl_s", 0, 3600, "verified identities are remembered this long per worker (s; a revoked key works this long)",
                    [](Config& c, std::int64_t v) { c.auth.identity_ttl = seconds(v); }));
    f.push_back(num("auth.failure_ttl_s", 0, 3600, "refused credentials are remembered this long per worker (s)",
                    [](Config& c, std::int64_t v) { c.auth.failure_ttl = seconds(v); }));
    f.push_back(num("auth.failure_limit", 1, 1000000,
                    "failed authentications allowed per client address and per API key within auth.failure_window_s, per instance; "
                    "past them a credential not yet verified is refused with 429 without a database lookup",
                    [](Config& c, std::int64_t v) { c.auth.failure_limit = v; }));
    f.push_back(str("auth.source",
                    "who says whom a credential belongs to: \"database\" (the ERP's tables, with auth.encryption_key) or \"upstream\" "
                    "(the ERP itself at upstream.url: frappe.auth.get_logged_user and the user's roles, asked with the client's "
                    "credentials; remembered like any identity)",
                    [](Config& c, const std::string& v) {
                      if (v != "database" && v != "upstream") throw std::invalid_argument("expected \"database\" or \"upstream\"");
                      c.auth.source = v;
                    }));
    f.push_back(str("auth.permissions",
                    "who decides what a user may read and write through /api/resource: \"erp\" (the ERP's own permission tables, "
                    "read again when they change; the rules file's permissions for doctypes they do not cover) or \"rules\" (the "
                    "rules file only)",
                    [](Config& c, const std::string& v) {
                      if (v != "erp" && v != "rules") throw std::invalid_argument("expected \"erp\" or \"rules\"");
                      c.auth.permissions = v;
                    }));
    f.push_back(num("auth.failure_window_s", 1, 86400, "the window of auth.failure_limit (s)",
                    [](Config& c, std::int64_t v) { c.auth.failure_window = seconds(v); }));
    f.push_back(num("invalidation.relay_interval_ms", 10, 60000, "how often the outbox relay delivers invalidations that were not delivered at once (ms)",
                    [](Config& c, std::int64_t v) { c.invalidation.relay_interval = milliseconds(v); }));
    f.push_back(num("invalidation.stream_max_len", 100, 10000000, "invalidation events kept in the Redis stream",
                    [](Config& c, std::int64_t v) { c.invalidation.stream_max_len = static_cast<std::size_t>(v); }));
    f.push_back(num("invalidation.gap_grace_s", 1, 3600,
                    "how long the relay waits for an outbox id taken by a transaction not yet committed before taking it as rolled back (s)",
                    [](Config& c, std::int64_t v) { c.invalidation.gap_grace = seconds(v); }));
    f.push_back(num("invalidation.outbox_retention_s", 60, 30 * 86400, "delivered outbox rows are purged after this (s)",
                    [](Config& c, std::int64_t v) { c.invalidation.outbox_retention = seconds(v); }));
    f.push_back(num("invalidation.heartbeat_ms", 5, 10000,
                    "how often an instance renews its lease in Redis and proves that it hears invalidation events (ms)",
                    [](Config& c, std::int64_t v) { c.invalidation.heartbeat = milliseconds(v); }));
    f.push_back(num("invalidation.fence_ms", 20, 60000,
                    "an instance that has not proven for this long that it hears invalidation events stops answering from L1; "
                    "a write waits at most about this long for an instance that does not acknowledge (ms)",
                    [](Config& c, std::int64_t v) { c.invalidation.fence = milliseconds(v); }));
    f.push_back(str("invalidation.binlog",
                    "follow MariaDB's binary log so that writes around pitstop are relayed as they commit: \"auto\" (when the server "
                    "writes one in ROW format and the user may read it), \"on\" or \"off\" (the relay's interval is the bound)",
                    [](Config& c, const std::string& v) {
                      if (v != "auto" && v != "on" && v != "off") throw std::invalid_argument("expected \"auto\", \"on\" or \"off\"");
                      c.invalidation.binlog = v;
                    }));
    f.push_back(num("invalidation.lease_ms", 40, 600000,
                    "an instance that has not renewed its lease for this long is no longer waited for by writes (ms)",
                    [](Config& c, std::int64_t v) { c.invalidation.lease = milliseconds(v); }));
    f.push_back(str("erp.redis_cache_url", "the ERP's redis_cache (empty: none); writes drop its cached copies of documents",
                    [](Config& c, const std::string& v) {
                      c.erp.redis_cache_url = v;
                      if (v.empty()) return;
                      std::string why;
                      if (!parse_redis_url(v, c.erp.redis_cache, why)) throw std::invalid_argument(why);
                    }));
    f.push_back(str("erp.db_name", "the ERP site's database name, the prefix of its Redis keys",
                    [](Config& c, const std::string& v) { c.erp.db_name = v; }));
    f.push_back(str("erp.events_redis_url",
                    "the Redis the ERP publishes its realtime events on (v15: redis_queue; empty: none); its doc_update and "
                    "list_update messages invalidate the documents and lists they name",
                    [](Config& c, const std::string& v) {
                      c.erp.events_redis_url = v;
                      if (v.empty()) return;
                      std::string why;
                      if (!parse_redis_url(v, c.erp.events_redis, why)) throw std::invalid_argument(why);
                    }));
    f.push_back(str("upstream.url", "the ERP's base URL, http://host:port; every request no rule answers is relayed there (empty: answered 404)",
                    [](Config& c, const std::string& v) {
                      c.upstream.url = v;
                      c.upstream.address = {};
                      if (v.empty()) return;
                      std::string why;
                      if (!parse_http_url(v, c.upstream.address, why)) throw std::invalid_argument(why);
                    }));
    f.push_back(str("upstream.site_name", "sent to the ERP as X-Frappe-Site-Name when set (a bench serving several sites)",
                    [](Config& c, const std::string& v) {
                      if (v.find_first_of("\r\n") != std::string::npos) throw std::invalid_argument("a site name is one line");
                      c.upstream.site_name = v;
                    }));
    f.push_back(str("upstream.realtime_url", "Frappe's socket.io server, http://host:port; websockets on /socket.io/ go there (empty: upstream.url)",
                    [](Config& c, const std::string& v) {
                      c.upstream.realtime_url = v;
                      c.upstream.realtime = {};
                      if (v.empty()) return;
                      std::string why;
                      if (!parse_http_url(v, c.upstream.realtime, why)) throw std::invalid_argument(why);
                    }));
    f.push_back(num("upstream.connect_timeout_ms", 1, kHour, "deadline for connecting to the ERP (ms); past it the client gets 502",
                    [](Config& c, std::int64_t v) { c.upstream.connect_timeout = milliseconds(v); }));
    f.push_back(num("upstream.response_timeout_ms", 1, 24 * kHour, "longest wait for the ERP's answer to begin (ms); past it the client gets 504",
                    [](Config& c, std::int64_t v) { c.upstream.response_timeout = milliseconds(v); }));
    f.push_back(num("upstream.idle_timeout_ms", 1, 24 * kHour, "longest pause in a relayed body, either way (ms)",
                    [](Config& c, std::int64_t v) { c.upstream.idle_timeout = milliseconds(v); }));
    f.push_back(num("upstream.websocket_idle_s", 1, 86400, "a tunnelled websocket with no byte either way for this long is closed (s)",
                    [](Config& c, std::int64_t v) { c.upstream.websocket_idle = seconds(v); }));
    f.push_back(num("upstream.pool_size", 0, 100000, "idle keep-alive connections to the ERP kept per worker",
                    [](Config& c, std::int64_t v) { c.upstream.pool_size = static_cast<std::size_t>(v); }));
    f.push_back(num("upstream.max_concurrent", 1, 1000000, "relayed requests in flight per worker; more are answered 503 at once",
                    [](Config& c, std::int64_t v) { c.upstream.max_concurrent = static_cast<std::size_t>(v); }));
    f.push_back(num("upstream.max_body_bytes", 0, 1LL << 40,
                    "largest request body relayed to the ERP (streamed, never held whole); larger gets 413. Bodies pitstop reads "
                    "itself are bounded by limits.max_body_bytes",
                    [](Config& c, std::int64_t v) { c.upstream.max_body_bytes = static_cast<std::size_t>(v); }));
    f.push_back({split_path("cache.enabled"), Type::boolean, 0, 0,
                 "cache answers (false: every read goes to the origin, no L1, Redis or single-flight; a baseline for benchmarks)",
                 [](Config& c, const Scalar& v, const std::string&) { c.cache.enabled = v.b; }});
    f.push_back(num("cache.l1_bytes", 0, 1LL << 40, "in-process cache size in bytes, all workers together (0 = L1 off)",
                    [](Config& c, std::int64_t v) { c.cache.l1_bytes = static_cast<std::size_t>(v); }));
    f.push_back({split_path("cache.share_by_permission"), Type::boolean, 0, 0,
                 "key resource answers by the permission fingerprint, so that users who may see the same share them (false: one "
                 "entry per user; a baseline for benchmarks)",
                 [](Config& c, const Scalar& v, const std::string&) { c.cache.share_by_permission = v.b; }});
    f.push_back(str("cache.default_category", "category of rules that name none (resources)",
                    [](Config& c, const std::string& v) { c.cache.default_category = v; }));
    struct C { const char* key; seconds Category::*member; std::int64_t min; const char* help; };
    for (C k : {C{"ttl_s", &Category::ttl, 1, "time to live of a cached answer (s)"},
                C{"stale_while_revalidate_s", &Category::stale_while_revalidate, 0, "window after expiry in which the old answer is served while one refresh runs (s)"},
                C{"stale_if_error_s", &Category::stale_if_error, 0, "window after expiry in which the old answer is served when the origin fails (s)"}}) {
      auto member = k.member;
      f.push_back({{"cache", "categories", "*", k.key}, Type::integer, k.min, 30LL * 24 * 3600, k.help,
                   [member](Config& c, const Scalar& v, const std::string& name) {
                     c.cache.categories[name].*member = seconds(v.i);
                   }});
    }
    for (const char* cls : {"get", "post", "put", "delete"}) {
      std::string base = std::string("rate_limits.") + cls + ".";
      std::string name = cls;
      f.push_back(num(base + "limit", 1, 1LL << 40, std::string("requests of class ") + cls + " per window and identity",
                      [name](Config& c, std::int64_t v) { c.rate_limits[name].limit = v; }));
      f.push_back(num(base + "window_s", 1, 24 * 3600, "the window of that quota (s)",
                      [name](Config& c, std::int64_t v) { c.rate_limits[name].window = seconds(v); }));
      f.push_back(num(base + "burst", 0, 1LL << 40, "requests allowed at once on top of the steady rate",
                      [name](Config& c, std::int64_t v) { c.rate_limits[name].burst = v; }));
    }
    f.push_back({split_path("limiting.enabled"), Type::boolean, 0, 0, "hold every client to its rate limit",
                 [](Config& c, const Scalar& v, const std::string&) { c.limiting.enabled = v.b; }});
    f.push_back(str("limiting.fail_mode", "with Redis unreachable: \"local\" (each instance limits alone, same quotas) or \"closed\" (refuse with 503)",
                    [](Config& c, const std::string& v) {
                      if (v != "local" && v != "closed") throw std::invalid_argument("expected \"local\" or \"closed\"");
                      c.limiting.fail_closed = v == "closed";
                    }));
    f.push_back({split_path("limiting.local_shortcut"), Type::boolean, 0, 0,
                 "refuse a client already known to be over its limit without asking Redis until its retry time",
                 [](Config& c, const Scalar& v, const std::string&) { c.limiting.local_shortcut = v.b; }});
    f.push_back({split_path("limiting.trusted_proxies"), Type::string_list, 0, 1000,
                 "addresses or networks (10.0.0.0/8) of proxies whose X-Forwarded-For is believed (environment: comma-separated)",
                 [](Config& c, const Scalar& v, const std::string&) { c.limiting.trusted_proxies = v.list; }});
    for (const char* cls : {"get", "post", "put", "delete"}) {
      std::string name = cls;
      auto role_field = [&](const char* leaf, std::int64_t min, std::int64_t max, std::string help,
                            std::function<void(RateLimit&, std::int64_t)> set) {
        f.push_back({{"limiting", "roles", "*", cls, leaf}, Type::integer, min, max, std::move(help),
                     [name, set](Config& c, const Scalar& v, const std::string& role) { set(c.limiting.roles[role][name], v.i); }});
      };
      role_field("limit", 1, 1LL << 40, std::string("a role's quota of class ") + cls + " (the most generous of a user's roles applies)",
                 [](RateLimit& r, std::int64_t v) { r.limit = v; });
      role_field("window_s", 1, 24 * 3600, "that quota's window (s)", [](RateLimit& r, std::int64_t v) { r.window = seconds(v); });
      role_field("burst", 0, 1LL << 40, "that quota's burst", [](RateLimit& r, std::int64_t v) { r.burst = v; });
    }
    f.push_back(str("rules", "rules file (relative paths: from the config file's directory)",
                    [](Config& c, const std::string& v) {
                      if (v.empty()) throw std::invalid_argument("must not be empty");
                      c.rules_file = v;
                    }));
    return f;
  }();
  return fields;
}

bool segment_matches(const std::string& pattern, const std::string& key) {
  return pattern == "*" || pattern == key;
}

std::string to_env_name(const std::vector<std::string>& path) {
  std::string out = "PITSTOP";
  for (const auto& seg : path) {
    out += '_';
    for (char c : seg) out += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : (c == '-' ? '_' : c);
  }
  return out;
}

std::string to_json_path(const std::vector<std::string>& path) {
  std::string out = "$";
  for (const auto& seg : path) out += "." + seg;
  return out;
}

const char* type_text(Type t) {
  switch (t) {
    case Type::string: return "string";
    case Type::integer: return "integer";
    case Type::boolean: return "boolean";
    case Type::string_list: return "list of strings";
  }
  return "?";
}

// Levenshtein distance, for "did you mean" on unknown keys.
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Checks that every key in the tree is known and every leaf has the right kind.
void check_tree(const Node& n, std::vector<std::string>& path) {
  const auto& fields = schema();
  if (n.kind != Node::Kind::object) return;
  for (const auto& [key, child] : n.members) {
    path.push_back(key);
    bool container = false, leaf = false;
    const Field* leaf_field = nullptr;
    for (const auto& f : fields) {
      if (f.path.size() < path.size()) continue;
      bool match = true;
      for (std::size_t k = 0; k < path.size() && match; ++k) match = segment_matches(f.path[k], path[k]);
      if (!match) continue;
      if (f.path.size() == path.size()) {
        leaf = true;
        leaf_field = &f;
      } else {
        container = true;
      }
    }
    std::string jp = to_json_path(path);
    if (!leaf && !container) {
      std::set<std::string> known;
      for (const auto& f : fields) {
        if (f.path.size() < path.size()) continue;
        bool match = true;
        for (std::size_t k = 0; k + 1 < path.size() && match; ++k) match = segment_matches(f.path[k], path[k]);
        if (match && f.path[path.size() - 1] != "*") known.insert(f.path[path.size() - 1]);
      }
      std::string msg = "unknown key \"" + key + "\"";
      std::string best;
      std::size_t best_d = 3;
      for (const auto& k : known) {
        auto d = distance(k, key);
        if (d < best_d) best_d = d, best = k;
      }
      if (!best.empty()) msg += "; did you mean \"" + best + "\"?";
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      msg += " Known keys here: " + list + ".";
      fail(child.origin, jp, msg);
    }
    if (container) {
      if (child.kind != Node::Kind::object)
        fail(child.origin, jp, std::string("expected an object, got ") + kind_name(child.kind));
      check_tree(child, path);
    } else if (leaf_field) {
      const Field& f = *leaf_field;
      auto expect = [&](Node::Kind k, const char* what) {
        if (child.kind != k)
          fail(child.origin, jp, std::string("expected ") + what + ", got " + kind_name(child.kind));
      };
      switch (f.type) {
        case Type::string: expect(Node::Kind::string, "a string"); break;
        case Type::boolean: expect(Node::Kind::boolean, "true or false"); break;
        case Type::integer:
          if (child.kind == Node::Kind::floating)
            fail(child.origin, jp, "expected a whole number, got a fraction");
          expect(Node::Kind::integer, "an integer");
          if (child.i < f.min || child.i > f.max)
            fail(child.origin, jp,
                 "expected an integer in " + std::to_string(f.min) + ".." + std::to_string(f.max) +
                     ", got " + std::to_string(child.i));
          break;
        case Type::string_list:
          expect(Node::Kind::array, "an array of strings");
          if (static_cast<std::int64_t>(child.items.size()) > f.max)
            fail(child.origin, jp, "at most " + std::to_string(f.max) + " entries");
          for (std::size_t k = 0; k < child.items.size(); ++k)
            if (child.items[k].kind != Node::Kind::string)
              fail(child.origin, jp + "[" + std::to_string(k) + "]",
                   std::string("expected a string, got ") + kind_name(child.items[k].kind));
          break;
      }
    }
    path.pop_back();
  }
}

// Applies the leaves of the tree to the config through the schema's setters.
void apply_tree(const Node& n, std::vector<std::string>& path, Config& cfg) {
  for (const auto& [key, child] : n.members) {
    path.push_back(key);
    if (child.kind == Node::Kind::object) {
      apply_tree(child, path, cfg);
    } else {
      for (const auto& f : schema()) {
        if (f.path.size() != path.size()) continue;
        bool match = true;
        std::string wildcard;
        for (std::size_t k = 0; k < path.size() && match; ++k) {
          match = segment_matches(f.path[k], path[k]);
          if (f.path[k] == "*") wildcard = path[k];
        }
        if (!match) continue;
        Scalar v;
        v.i = child.i;
        v.b = child.b;
        v.s = child.s;
        for (const auto& item : child.items) v.list.push_back(item.s);
        try {
          f.set(cfg, v, wildcard);
        } catch (const std::invalid_argument& e) {
          std::string shown = child.kind == Node::Kind::string ? " (got \"" + child.s + "\")" : "";
          fail(child.origin, to_json_path(path), std::string(e.what()) + shown);
        }
        break;
      }
    }
    path.pop_back();
  }
}

Node* ensure_path(Node& root, const std::vector<std::string>& path, const std::string& origin) {
  Node* cur = &root;
  for (const auto& seg : path) {
    if (cur->kind != Node::Kind::object) return nullptr;
    Node* next = cur->find(seg);
    if (!next) {
      Node fresh;
      fresh.kind = Node::Kind::object;
      fresh.origin = origin;
      cur->members.emplace_back(seg, std::move(fresh));
      next = &cur->members.back().second;
    }
    cur = next;
  }
  return cur;
}

// The keys present under each map of the schema ("cache.categories" -> its category names).
using WildcardKeys = std::map<std::string, std::set<std::string>>;

// The concrete (wildcards expanded) leaf paths that environment variables can set.
std::vector<std::pair<const Field*, std::vector<std::string>>> concrete_fields(const WildcardKeys& keys) {
  std::vector<std::pair<const Field*, std::vector<std::string>>> out;
  for (const auto& f : schema()) {
    auto star = std::find(f.path.begin(), f.path.end(), "*");
    if (star == f.path.end()) {
      out.emplace_back(&f, f.path);
      continue;
    }
    std::string prefix;
    for (auto it = f.path.begin(); it != star; ++it) prefix += (prefix.empty() ? "" : ".") + *it;
    auto names = keys.find(prefix);
    if (names == keys.end()) continue;
    for (const auto& name : names->second) {
      auto p = f.path;
      p[static_cast<std::size_t>(star - f.path.begin())] = name;
      out.emplace_back(&f, p);
    }
  }
  return out;
}

WildcardKeys wildcard_keys(const Node& root) {
  WildcardKeys out;
  for (const char* map : {"cache.categories", "limiting.roles"}) {
    const Node* n = &root;
    for (const auto& seg : split_path(map)) {
      n = n ? n->find(seg) : nullptr;
    }
    auto& set = out[map];
    if (n)
      for (const auto& [name, _] : n->members) set.insert(name);
  }
  return out;
}

void apply_env(Node& root, const char* const* env, std::vector<std::string>& warnings) {
  std::map<std::string, std::string> vars;
  for (auto p = env; p && *p; ++p) {
    std::string_view entry(*p);
    if (entry.rfind("PITSTOP_", 0) != 0) continue;
    auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    vars.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  if (vars.empty()) return;
  std::set<std::string> used;
  for (const auto& [field, path] : concrete_fields(wildcard_keys(root))) {
    std::string name = to_env_name(path);
    auto it = vars.find(name);
    if (it == vars.end()) continue;
    used.insert(name);
    const std::string origin = "environment variable " + name;
    const std::string& text = it->second;
    std::vector<std::string> parent(path.begin(), path.end() - 1);
    Node* holder = ensure_path(root, parent, origin);
    if (!holder) fail(origin, to_json_path(parent), "the file has a non-object here");
    Node value;
    value.origin = origin;
    switch (field->type) {
      case Type::string:
        value.kind = Node::Kind::string;
        value.s = text;
        break;
      case Type::integer: {
        value.kind = Node::Kind::integer;
        auto r = std::from_chars(text.data(), text.data() + text.size(), value.i);
        if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size())
          fail(origin, to_json_path(path), "expected an integer, got \"" + text + "\"");
        break;
      }
      case Type::boolean:
        value.kind = Node::Kind::boolean;
        if (text == "true" || text == "1" || text == "yes") value.b = true;
        else if (text == "false" || text == "0" || text == "no") value.b = false;
        else fail(origin, to_json_path(path), "expected true or false, got \"" + text + "\"");
        break;
      case Type::string_list: {
        value.kind = Node::Kind::array;
        std::size_t start = 0;
        while (start <= text.size() && !text.empty()) {
          auto comma = text.find(',', start);
          Node item;
          item.kind = Node::Kind::string;
          item.origin = origin;
          item.s = text.substr(start, comma - start);
          if (!item.s.empty()) value.items.push_back(std::move(item));
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        break;
      }
    }
    if (Node* existing = holder->find(path.back())) *existing = std::move(value);
    else holder->members.emplace_back(path.back(), std::move(value));
  }
  for (const auto& [name, _] : vars)
    if (!used.count(name) && name != "PITSTOP_CONFIG")
      warnings.push_back("environment variable " + name +
                         " is not a pitstop setting and was ignored (pitstop --list-env lists them)");
}

void validate(const Config& c) {
  const std::string& src = c.source;
  if (c.admin.enabled && !c.admin.loopback() && c.admin.token.empty())
    fail(src, "$.admin.token",
         "is required when admin.listen (" + c.admin.listen.host + ") is not a loopback address: set admin.token (or "
         "PITSTOP_ADMIN_TOKEN) to a secret of 16 characters or more, or listen on 127.0.0.1");
  if (c.redis_cache.host.empty()) fail(src, "$.redis.cache.url", "is required");
  if (c.redis_queue.host.empty()) fail(src, "$.redis.queue.url", "is required");
  if (c.mariadb.primary.host.empty()) fail(src, "$.mariadb.primary", "is required");
  if (c.auth.encryption_key.empty() && c.auth.source == "database")
    fail(src, "$.auth.encryption_key", "is required: the encryption_key of the ERP site (site_config.json), or \"auth.source\": \"upstream\"");
  if (c.auth.source == "upstream" && !c.upstream.enabled())
    fail(src, "$.auth.source", "\"upstream\" asks the ERP, but upstream.url is not set; set it or use \"database\"");
  if (c.limits.max_url_bytes > c.limits.max_header_bytes)
    fail(src, "$.limits.max_url_bytes",
         "must not exceed limits.max_header_bytes (" + std::to_string(c.limits.max_header_bytes) +
             "): the URL is part of the header block");
  for (const auto& [name, cat] : c.cache.categories) {
    if (cat.ttl.count() <= 0)
      fail(src, "$.cache.categories." + name + ".ttl_s", "is required and must be at least 1");
    if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
      fail(src, "$.cache.categories." + name, "category names use a-z, 0-9 and _ only");
  }
  if (c.invalidation.heartbeat * 3 > c.invalidation.fence)
    fail(src, "$.invalidation.fence_ms",
         "must be at least 3 x invalidation.heartbeat_ms (" + std::to_string(c.invalidation.heartbeat.count()) +
             "), or an instance would stop using L1 whenever one heartbeat is late; raise fence_ms or lower heartbeat_ms");
  if (c.invalidation.fence * 2 > c.invalidation.lease)
    fail(src, "$.invalidation.lease_ms",
         "must be at least 2 x invalidation.fence_ms (" + std::to_string(c.invalidation.fence.count()) +
             "): an instance must stop using L1 well before writers stop waiting for it; raise lease_ms or lower fence_ms");
  if (!c.erp.redis_cache_url.empty() && c.erp.db_name.empty())
    fail(src, "$.erp.db_name", "is required with erp.redis_cache_url: the ERP's keys start with its database name");
  if (!c.cache.categories.count(c.cache.default_category))
    fail(src, "$.cache.default_category",
         "names \"" + c.cache.default_category + "\", which is not in cache.categories; add it there or pick an existing category");
  for (const char* cls : {"get", "post", "put", "delete"}) {
    auto it = c.rate_limits.find(cls);
    if (it == c.rate_limits.end() || it->second.limit <= 0)
      fail(src, std::string("$.rate_limits.") + cls + ".limit", "is required (requests per window)");
  }
  for (const auto& [role, classes] : c.limiting.roles)
    for (const auto& [cls, rl] : classes)
      if (rl.limit <= 0)
        fail(src, "$.limiting.roles." + role + "." + cls + ".limit", "is required when the role overrides class " + cls);
  for (const auto& p : c.limiting.trusted_proxies) {
    // Checked like the limiter will read it: an address, or a network with a prefix length.
    auto slash = p.find('/');
    std::string addr = p.substr(0, slash);
    bool ok = !addr.empty() && addr.find_first_not_of("0123456789abcdefABCDEF.:") == std::string::npos;
    if (slash != std::string::npos) ok = ok && slash + 1 < p.size() && p.find_first_not_of("0123456789", slash + 1) == std::string::npos;
    if (!ok) fail(src, "$.limiting.trusted_proxies", "\"" + p + "\" is not an IP address or network such as 10.0.0.0/8");
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot be read (does it exist? pass --config FILE or set PITSTOP_CONFIG)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool Admin::loopback() const {
  const std::string& h = listen.host;
  return h == "localhost" || h == "::1" || h.starts_with("127.");
}

int Config::effective_workers() const {
  if (workers > 0) return workers;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

Config load(const std::string& path, const char* const* env) {
  std::string text = read_file(path);
  if (text.size() > (4u << 20)) throw ConfigError(path + ": larger than 4 MiB; is this the right file?");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(text).get(doc))
    throw ConfigError(path + ": not valid JSON (" + simdjson::error_message(err) + ")");
  Node root = from_dom(doc, path, "$");
  if (root.kind != Node::Kind::object) fail(path, "$", std::string("expected an object, got ") + kind_name(root.kind));

  Config cfg;
  cfg.source = path;
  std::vector<std::string> warnings;
  apply_env(root, env, warnings);
  std::vector<std::string> p;
  check_tree(root, p);
  apply_tree(root, p, cfg);
  validate(cfg);
  // Rules are found relative to the config file, so that pitstop can be started from anywhere.
  std::filesystem::path rules(cfg.rules_file);
  if (rules.is_relative()) cfg.rules_file = (std::filesystem::path(path).parent_path() / rules).lexically_normal().string();
  cfg.warnings = std::move(warnings);
  return cfg;
}

std::vector<EnvVar> env_variables(const Config& cfg) {
  WildcardKeys keys;
  for (const auto& [name, _] : cfg.cache.categories) keys["cache.categories"].insert(name);
  for (const auto& [name, _] : cfg.limiting.roles) keys["limiting.roles"].insert(name);
  std::vector<EnvVar> out;
  for (const auto& [field, path] : concrete_fields(keys))
    out.push_back({to_env_name(path), to_json_path(path), type_text(field->type), field->help});
  return out;
}

std::vector<std::string> keep_restart_only(const Config& running, Config& next) {
  std::vector<std::string> changed;
  auto same_redis = [](const Redis& a, const Redis& b) {
    return a.url == b.url && a.connect_timeout == b.connect_timeout && a.command_timeout == b.command_timeout &&
           a.reconnect_max_backoff == b.reconnect_max_backoff;
  };
  auto keep = [&](const char* path, bool same, auto&& copy) {
    if (same) return;
    changed.emplace_back(path);
    copy();
  };
  keep("$.listen", running.listen.host == next.listen.host && running.listen.port == next.listen.port, [&] { next.listen = running.listen; });
  keep("$.workers", running.workers == next.workers, [&] { next.workers = running.workers; });
  keep("$.site", running.site == next.site, [&] { next.site = running.site; });
  keep("$.admin", running.admin.enabled == next.admin.enabled && running.admin.listen.host == next.admin.listen.host &&
                      running.admin.listen.port == next.admin.listen.port && running.admin.token == next.admin.token,
       [&] { next.admin = running.admin; });
  keep("$.redis.cache", same_redis(running.redis_cache, next.redis_cache), [&] { next.redis_cache = running.redis_cache; });
  keep("$.redis.queue", same_redis(running.redis_queue, next.redis_queue), [&] { next.redis_queue = running.redis_queue; });
  const auto& rm = running.mariadb;
  const auto& nm = next.mariadb;
  keep("$.mariadb", rm.primary_url == nm.primary_url && rm.replica_urls == nm.replica_urls && rm.pool_size == nm.pool_size &&
                        rm.connect_timeout == nm.connect_timeout && rm.query_timeout == nm.query_timeout && rm.acquire_timeout == nm.acquire_timeout,
       [&] { next.mariadb = running.mariadb; });
  const auto& rt = running.timeouts;
  const auto& nt = next.timeouts;
  keep("$.timeouts", rt.header_read == nt.header_read && rt.body_read == nt.body_read && rt.idle_keepalive == nt.idle_keepalive &&
                         rt.write == nt.write && rt.drain == nt.drain && rt.readiness == nt.readiness && rt.origin == nt.origin,
       [&] { next.timeouts = running.timeouts; });
  const auto& rl = running.limits;
  const auto& nl = next.limits;
  keep("$.limits", rl.max_header_bytes == nl.max_header_bytes && rl.max_url_bytes == nl.max_url_bytes && rl.max_body_bytes == nl.max_body_bytes &&
                       rl.max_connections == nl.max_connections && rl.max_requests_per_connection == nl.max_requests_per_connection &&
                       rl.max_list_rows == nl.max_list_rows,
       [&] { next.limits = running.limits; });
  const auto& ra = running.auth;
  const auto& na = next.auth;
  keep("$.auth", ra.encryption_key == na.encryption_key && ra.session_expiry == na.session_expiry && ra.identity_ttl == na.identity_ttl &&
                     ra.failure_ttl == na.failure_ttl && ra.failure_limit == na.failure_limit && ra.failure_window == na.failure_window &&
                     ra.source == na.source && ra.permissions == na.permissions,
       [&] { next.auth = running.auth; });
  keep("$.cache.enabled", running.cache.enabled == next.cache.enabled, [&] { next.cache.enabled = running.cache.enabled; });
  keep("$.cache.l1_bytes", running.cache.l1_bytes == next.cache.l1_bytes, [&] { next.cache.l1_bytes = running.cache.l1_bytes; });
  const auto& ri = running.invalidation;
  const auto& ni = next.invalidation;
  keep("$.invalidation", ri.relay_interval == ni.relay_interval && ri.stream_max_len == ni.stream_max_len &&
                             ri.outbox_retention == ni.outbox_retention && ri.gap_grace == ni.gap_grace && ri.heartbeat == ni.heartbeat &&
                             ri.fence == ni.fence && ri.lease == ni.lease && ri.binlog == ni.binlog,
       [&] { next.invalidation = running.invalidation; });
  keep("$.erp", running.erp.redis_cache_url == next.erp.redis_cache_url && running.erp.db_name == next.erp.db_name &&
                    running.erp.events_redis_url == next.erp.events_redis_url,
       [&] { next.erp = running.erp; });
  const auto& ru = running.upstream;
  const auto& nu = next.upstream;
  keep("$.upstream", ru.url == nu.url && ru.site_name == nu.site_name && ru.realtime_url == nu.realtime_url &&
                         ru.connect_timeout == nu.connect_timeout && ru.response_timeout == nu.response_timeout &&
                         ru.idle_timeout == nu.idle_timeout && ru.websocket_idle == nu.websocket_idle && ru.pool_size == nu.pool_size &&
                         ru.max_concurrent == nu.max_concurrent && ru.max_body_bytes == nu.max_body_bytes,
       [&] { next.upstream = running.upstream; });
  keep("$.limiting.fail_mode", running.limiting.fail_closed == next.limiting.fail_closed,
       [&] { next.limiting.fail_closed = running.limiting.fail_closed; });
  keep("$.limiting.local_shortcut", running.limiting.local_shortcut == next.limiting.local_shortcut,
       [&] { next.limiting.local_shortcut = running.limiting.local_shortcut; });
  keep("$.limiting.trusted_proxies", running.limiting.trusted_proxies == next.limiting.trusted_proxies,
       [&] { next.limiting.trusted_proxies = running.limiting.trusted_proxies; });
  return changed;
}

bool parse_host_port(const std::string& text, HostPort& out) {
  std::string why;
  return parse_host_port(std::string_view(text), out, why);
}

}  // namespace pitstop::config
