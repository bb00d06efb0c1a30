#pragma once
// pitstop's configuration: config/pitstop.json (the documented default), overridden by PITSTOP_*
// environment variables. Loading is the one place where exceptions are used: every problem is a
// ConfigError naming the source (file or variable), the JSON path and what is expected.
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace pitstop::config {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

struct Redis {
  std::string url;  // redis://[[user]:password@]host:port[/db]
  std::string host;
  std::uint16_t port = 6379;
  std::string username;
  std::string password;
  int db = 0;
  milliseconds connect_timeout{1000};
  milliseconds command_timeout{500};
  milliseconds reconnect_max_backoff{2000};
};

struct MariaDb {
  std::string host;
  std::uint16_t port = 3306;
  std::string user;
  std::string password;
  std::string database;
};

struct Database {
  std::string primary_url;  // mariadb://user:password@host:port/database
  MariaDb primary;
  std::vector<std::string> replica_urls;
  std::vector<MariaDb> replicas;
  int pool_size = 8;  // per worker
  milliseconds connect_timeout{2000};
  milliseconds query_timeout{5000};
  milliseconds acquire_timeout{2000};
};

struct Timeouts {
  milliseconds header_read{10000};
  milliseconds body_read{30000};
  milliseconds idle_keepalive{60000};
  milliseconds write{30000};
  milliseconds drain{15000};
  milliseconds readiness{1000};
  milliseconds origin{10000};  // longest wait for an origin answer (requests collapsed behind a fetch)
};

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_url_bytes = 8 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  std::size_t max_connections = 10000;
  std::size_t max_requests_per_connection = 0;  // 0 = unlimited
  std::size_t max_list_rows = 10000;            // /api/resource lists asking for all rows
};

struct Auth {
  std::string encryption_key;  // the site's Fernet key (site_config.json encryption_key)
  seconds session_expiry{6 * 3600};
  seconds identity_ttl{30};   // verified identities are remembered this long per worker
  seconds failure_ttl{5};     // refused credentials too, so that guessing costs no queries
  // Failed verifications allowed per client address and per API key (and as many more at
  // once) within the window, per instance; past them a new credential is refused with 429.
  std::int64_t failure_limit = 20;
  seconds failure_window{60};
  // Who decides who a credential belongs to: "database" (the ERP's tables) or "upstream" (the
  // ERP itself, asked at upstream.url).
  std::string source = "database";
  // Who decides what a user may read and write through /api/resource: "erp" (the ERP's own
  // permission tables, proxy/perm; the rules file for doctypes they do not cover) or "rules".
  std::string permissions = "erp";
};

struct Category {
  seconds ttl{0};
  seconds stale_while_revalidate{0};
  seconds stale_if_error{0};
};

struct Cache {
  bool enabled = true;
  std::size_t l1_bytes = 64u * 1024 * 1024;
  // Resource answers keyed by the permission fingerprint (users who may see the same share
  // entries) rather than by the user.
  bool share_by_permission = true;
  std::map<std::string, Category> categories;
  std::string default_category = "resource";
};

struct Invalidation {
  milliseconds relay_interval{250};  // how often the outbox relay looks for undelivered rows
  std::size_t stream_max_len = 10000;  // events kept in the Redis stream (approximately)
  seconds outbox_retention{86400};     // delivered outbox rows are purged after this
  seconds gap_grace{60};               // how long the relay waits for an outbox id to commit
  // Read-your-writes on every instance (ARCHITECTURE.md, "The write barrier").
  milliseconds heartbeat{50};   // how often an instance renews its lease and proves it hears events
  milliseconds fence{250};      // an instance that has not proven it hears events this long stops using L1
  milliseconds lease{1000};     // an instance that has not renewed its lease this long is no longer waited for
  std::string binlog = "auto";  // follow MariaDB's binary log to wake the relay: auto, on or off
};

// The ERP's own Redis cache: when set, a write through pitstop also drops the ERP's cached copy
// of the document (<db_name>|document_cache::<DocType>::<name>).
struct Erp {
  std::string redis_cache_url;  // empty: not configured
  Redis redis_cache;
  std::string db_name;
  // The Redis the ERP publishes its realtime `events` on (doc_update, list_update); empty: none.
  std::string events_redis_url;
  Redis events_redis;
};

// The ERP behind pitstop: what no rule answers is relayed there (empty url: answered 404, as a
// standalone pitstop does).
struct Upstream {
  std::string url;  // http://host:port
  HostPort address;
  std::string site_name;     // sent as X-Frappe-Site-Name when set
  std::string realtime_url;  // Frappe's socket.io server (empty: url)
  HostPort realtime;
  milliseconds connect_timeout{2000};
  milliseconds response_timeout{120000};  // to the answer's head; Frappe's gunicorn allows 120 s
  milliseconds idle_timeout{60000};       // between two reads or writes of a relayed body
  seconds websocket_idle{300};            // a tunnelled websocket with no byte either way
  std::size_t pool_size = 64;             // idle keep-alive connections kept per worker
  std::size_t max_concurrent = 512;       // relayed requests in flight per worker; more get 503
  std::size_t max_body_bytes = 100u << 20;  // largest relayed request body; larger gets 413
  bool enabled() const { return !url.empty(); }
};

struct RateLimit {
  std::int64_t limit = 0;  // requests per window
  seconds window{60};
  std::int64_t burst = 0;  // extra requests allowed at once
};

struct Limiting {
  bool enabled = true;
  bool fail_closed = false;
  bool local_shortcut = true;
  std::vector<std::string> trusted_proxies;
  // Role -> method class -> quota, for roles that need more (integrations, load tests).
  std::map<std::string, std::map<std::string, RateLimit>> roles;
};

// The admin listener (/metrics, /admin/*): its own port, never the public one.
struct Admin {
  HostPort listen{"127.0.0.1", 9145};
  bool enabled = true;      // listen "off" disables it
  std::string token;        // Bearer token for everything but /metrics; required off loopback
  bool loopback() const;
};

struct Config {
  std::string source;  // the file this was loaded from
  HostPort listen{"0.0.0.0", 8080};
  int workers = 0;  // 0 = one per core
  std::string site = "workshop.local";
  std::string log_level = "info";
  std::string access_log;  // log.access: "" off, "-" stdout, or a file
  Admin admin;
  Redis redis_cache;
  Redis redis_queue;
  Database mariadb;
  Timeouts timeouts;
  Limits limits;
  Auth auth;
  Cache cache;
  Invalidation invalidation;
  Erp erp;
  Upstream upstream;
  std::map<std::string, RateLimit> rate_limits;  // get, post, put, delete
  Limiting limiting;
  std::string rules_file = "rules/workshop.json";
  // Non-fatal findings while loading (e.g. an unknown PITSTOP_* variable), logged at start-up.
  std::vector<std::string> warnings;

  int effective_workers() const;
};

// Reads `path`, applies overrides from `env` (NAME=VALUE entries, like environ) and validates.
// A relative rules path is resolved against the config file's directory.
Config load(const std::string& path, const char* const* env);

// Every environment variable that can override `cfg` (its categories included), with the JSON
// path it sets and a description, in the order of the documentation.
struct EnvVar {
  std::string name;
  std::string path;
  std::string type;
  std::string help;
};
std::vector<EnvVar> env_variables(const Config& cfg);

// For a reload: copies into `next` what the running process cannot change without a restart
// (listeners, workers, the site, Redis and MariaDB, timeouts and HTTP limits, credentials,
// invalidation, the upstream, the admin listener, L1's size) and returns the JSON paths of those
// that `next` had changed. Categories, TTLs, rate limits, roles, limiting.enabled,
// cache.share_by_permission, the rules, log_level and log.access are what a reload applies.
std::vector<std::string> keep_restart_only(const Config& running, Config& next);

// Parses a listen address "host:port" / "[v6]:port".
bool parse_host_port(const std::string& text, HostPort& out);

}  // namespace pitstop::config
