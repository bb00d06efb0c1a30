#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>

#include "proxy/config/config.hpp"
#include "proxy/config/urls.hpp"
#include "tests/support/support.hpp"

namespace fs = std::filesystem;
using pitstop::config::ConfigError;
using pitstop::config::load;

namespace {

std::string default_text() {
  std::ifstream in(pitstop::test::source_dir() / "config/pitstop.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `text` to a temporary config file next to a copy of nothing else.
std::string write_config(const std::string& text) {
  static int n = 0;
  auto path = pitstop::test::scratch_dir() / ("config-" + std::to_string(n++) + ".json");
  std::ofstream(path) << text;
  return path.string();
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// The message of the ConfigError that loading `text` raises (with `env`), or "" if none.
std::string error_of(const std::string& text, std::vector<std::string> env = {}) {
  std::vector<const char*> envp;
  for (auto& e : env) envp.push_back(e.c_str());
  envp.push_back(nullptr);
  try {
    load(write_config(text), envp.data());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* const kNoEnv[] = {nullptr};

}  // namespace

TEST(Config, DefaultFileHasTheDocumentedValues) {
  auto c = load((pitstop::test::source_dir() / "config/pitstop.json").string(), kNoEnv);
  EXPECT_EQ(c.listen.host, "0.0.0.0");
  EXPECT_EQ(c.listen.port, 8080);
  EXPECT_EQ(c.workers, 0);
  EXPECT_GE(c.effective_workers(), 1);
  EXPECT_EQ(c.redis_cache.port, 13000);
  EXPECT_EQ(c.redis_queue.port, 11000);
  EXPECT_EQ(c.mariadb.primary.port, 13306);
  EXPECT_EQ(c.mariadb.primary.database, "workshop");
  EXPECT_EQ(c.limits.max_header_bytes, 16384u);
  EXPECT_EQ(c.limits.max_url_bytes, 8192u);
  EXPECT_EQ(c.limits.max_body_bytes, 1048576u);
  EXPECT_EQ(c.invalidation.heartbeat.count(), 50);
  EXPECT_EQ(c.invalidation.fence.count(), 250);
  EXPECT_EQ(c.invalidation.lease.count(), 1000);
  EXPECT_EQ(c.invalidation.binlog, "auto");
  EXPECT_EQ(c.timeouts.header_read.count(), 10000);
  EXPECT_EQ(c.timeouts.idle_keepalive.count(), 60000);
  using std::chrono::seconds;
  EXPECT_EQ(c.cache.categories.at("service_catalog").ttl, seconds(3600));
  EXPECT_EQ(c.cache.categories.at("customer_summary").ttl, seconds(1800));
  EXPECT_EQ(c.cache.categories.at("vehicle_history").ttl, seconds(1800));
  EXPECT_EQ(c.cache.categories.at("technician_skills").ttl, seconds(7200));
  EXPECT_EQ(c.cache.categories.at("workshop_schedule").ttl, seconds(900));
  EXPECT_EQ(c.cache.categories.at("parts_availability").ttl, seconds(300));
  EXPECT_TRUE(c.cache.categories.count(c.cache.default_category));
  EXPECT_EQ(c.rate_limits.at("get").limit, 200);
  EXPECT_EQ(c.rate_limits.at("post").limit, 50);
  EXPECT_EQ(c.rate_limits.at("put").limit, 50);
  EXPECT_EQ(c.rate_limits.at("delete").limit, 20);
  EXPECT_EQ(c.rate_limits.at("get").window, seconds(60));
  // The rules path is resolved against the config file's directory.
  EXPECT_EQ(fs::path(c.rules_file).filename(), "workshop.json");
  EXPECT_EQ(fs::path(c.rules_file).parent_path().filename(), "rules");
}

TEST(Config, EnvironmentOverridesEveryKind) {
  std::vector<std::string> env = {"PITSTOP_LISTEN=127.0.0.1:18090",
                                  "PITSTOP_WORKERS=3",
                                  "PITSTOP_REDIS_CACHE_URL=redis://:s%40cret@cache.local:7000/2",
                                  "PITSTOP_MARIADB_REPLICAS=mariadb://r:p@replica1:3306/workshop,mariadb://r:p@replica2/workshop",
                                  "PITSTOP_CACHE_CATEGORIES_SERVICE_CATALOG_TTL_S=42",
                                  "PITSTOP_RATE_LIMITS_GET_LIMIT=1000",
                                  "PITSTOP_TIMEOUTS_DRAIN_MS=1234",
                                  "UNRELATED=1"};
  std::vector<const char*> envp;
  for (auto& e : env) envp.push_back(e.c_str());
  envp.push_back(nullptr);
  auto c = load(write_config(default_text()), envp.data());
  EXPECT_EQ(c.listen.host, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 18090);
  EXPECT_EQ(c.workers, 3);
  EXPECT_EQ(c.redis_cache.host, "cache.local");
  EXPECT_EQ(c.redis_cache.port, 7000);
  EXPECT_EQ(c.redis_cache.password, "s@cret");
  EXPECT_EQ(c.redis_cache.db, 2);
  ASSERT_EQ(c.mariadb.replicas.size(), 2u);
  EXPECT_EQ(c.mariadb.replicas[1].host, "replica2");
  EXPECT_EQ(c.mariadb.replicas[1].port, 3306);
  EXPECT_EQ(c.cache.categories.at("service_catalog").ttl.count(), 42);
  EXPECT_EQ(c.rate_limits.at("get").limit, 1000);
  EXPECT_EQ(c.timeouts.drain.count(), 1234);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(Config, UnknownEnvironmentVariableIsAWarningNamingIt) {
  const char* env[] = {"PITSTOP_LISTN=1.2.3.4:5", nullptr};
  auto c = load(write_config(default_text()), env);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("PITSTOP_LISTN"), std::string::npos);
  EXPECT_EQ(c.listen.port, 8080);
}

TEST(Config, BadEnvironmentValueNamesTheVariableAndPath) {
  auto e = error_of(default_text(), {"PITSTOP_WORKERS=many"});
  EXPECT_NE(e.find("environment variable PITSTOP_WORKERS"), std::string::npos) << e;
  EXPECT_NE(e.find("$.workers"), std::string::npos) << e;
  e = error_of(default_text(), {"PITSTOP_LIMITS_MAX_BODY_BYTES=-5"});
  EXPECT_NE(e.find("$.limits.max_body_bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("0.."), std::string::npos) << e;
}

TEST(Config, UnknownKeyIsRefusedWithSuggestion) {
  auto e = error_of(replace(default_text(), "\"workers\": 0", "\"wrokers\": 0"));
  EXPECT_NE(e.find("$.wrokers"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean \"workers\""), std::string::npos) << e;
  e = error_of(replace(default_text(), "\"pool_size\": 8", "\"pool_size\": 8, \"poolsize\": 3"));
  EXPECT_NE(e.find("$.mariadb.poolsize"), std::string::npos) << e;
  e = error_of(replace(default_text(), "\"get\":    { \"limit\": 200", "\"patch\": { \"limit\": 1 }, \"get\": { \"limit\": 200"));
  EXPECT_NE(e.find("$.rate_limits.patch"), std::string::npos) << e;
}

TEST(Config, ErrorsNameFileAndPath) {
  auto text = replace(default_text(), "\"max_url_bytes\": 8192", "\"max_url_bytes\": \"8192\"");
  auto e = error_of(text);
  EXPECT_NE(e.find(".json: $.limits.max_url_bytes: expected an integer, got a string"), std::string::npos) << e;
}

TEST(Config, WrongTypesAreRefused) {
  EXPECT_NE(error_of(replace(default_text(), "\"workers\": 0", "\"workers\": 1.5")).find("whole number"), std::string::npos);
  EXPECT_NE(error_of(replace(default_text(), "\"workers\": 0", "\"workers\": true")).find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of(replace(default_text(), "\"replicas\": []", "\"replicas\": [1]")).find("$.mariadb.replicas[0]"), std::string::npos);
  EXPECT_NE(error_of(replace(default_text(), "\"timeouts\": {", "\"timeouts\": 5, \"x\": {")).find("$.timeouts"), std::string::npos);
}

TEST(Config, ImpossibleValuesAreRefused) {
  struct Case {
    std::string from, to, expect;
  };
  const Case cases[] = {
      {"\"listen\": \"0.0.0.0:8080\"", "\"listen\": \"0.0.0.0:99999\"", "$.listen"},
      {"\"listen\": \"0.0.0.0:8080\"", "\"listen\": \"0.0.0.0\"", "port is missing"},
      {"\"workers\": 0", "\"workers\": -1", "$.workers"},
      {"\"pool_size\": 8", "\"pool_size\": 0", "$.mariadb.pool_size"},
      {"\"header_read_ms\": 10000", "\"header_read_ms\": 0", "$.timeouts.header_read_ms"},
      {"\"max_url_bytes\": 8192", "\"max_url_bytes\": 65536", "must not exceed limits.max_header_bytes"},
      {"\"url\": \"redis://127.0.0.1:13000/0\"", "\"url\": \"http://127.0.0.1:13000\"", "redis://"},
      {"\"url\": \"redis://127.0.0.1:13000/0\"", "\"url\": \"redis://127.0.0.1:13000/x\"", "database after '/'"},
      {"\"primary\": \"mariadb://pitstop:pitstop@127.0.0.1:13306/workshop\"", "\"primary\": \"mariadb://127.0.0.1:13306/workshop\"", "user is missing"},
      {"\"primary\": \"mariadb://pitstop:pitstop@127.0.0.1:13306/workshop\"", "\"primary\": \"mariadb://u:p@h:3306/\"", "database is missing"},
      {"\"default_category\": \"resource\"", "\"default_category\": \"nope\"", "not in cache.categories"},
      {"\"ttl_s\": 300,  \"stale_while_revalidate_s\": 0,  \"stale_if_error_s\": 60 }", "\"ttl_s\": 0, \"stale_while_revalidate_s\": 0,  \"stale_if_error_s\": 60 }", "ttl_s"},
      {"\"log_level\": \"info\"", "\"log_level\": \"verbose\"", "debug, info, warn, error"},
      // An instance must stop using L1 well before writers stop waiting for it, and not at every
      // late heartbeat.
      {"\"fence_ms\": 250", "\"fence_ms\": 100", "$.invalidation.fence_ms: must be at least 3 x invalidation.heartbeat_ms"},
      {"\"lease_ms\": 1000", "\"lease_ms\": 400", "$.invalidation.lease_ms: must be at least 2 x invalidation.fence_ms"},
      {"\"heartbeat_ms\": 50", "\"heartbeat_ms\": 0", "$.invalidation.heartbeat_ms"},
      {"\"binlog\": \"auto\"", "\"binlog\": \"yes\"", "expected \"auto\", \"on\" or \"off\""},
  };
  for (const auto& c : cases) {
    auto e = error_of(replace(default_text(), c.from, c.to));
    EXPECT_NE(e.find(c.expect), std::string::npos) << "case " << c.to << ": " << e;
  }
}

TEST(Config, HostileFilesAreRefusedClearly) {
  EXPECT_NE(error_of("").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("{\"listen\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1,2,3]").find("expected an object"), std::string::npos);
  EXPECT_NE(error_of(std::string(100000, '[')).find("not valid JSON"), std::string::npos);
  auto dup = replace(default_text(), "\"workers\": 0", "\"workers\": 0, \"workers\": 2");
  EXPECT_NE(error_of(dup).find("appears twice"), std::string::npos);
  std::string missing;
  try {
    load("/nonexistent/pitstop.json", kNoEnv);
  } catch (const ConfigError& e) {
    missing = e.what();
  }
  EXPECT_NE(missing.find("/nonexistent/pitstop.json: cannot be read"), std::string::npos) << missing;
  // Required settings that are absent.
  EXPECT_NE(error_of("{}").find("$.redis.cache.url: is required"), std::string::npos) << error_of("{}");
}

TEST(Config, UrlParsersRejectHostileInput) {
  pitstop::config::Redis r;
  pitstop::config::MariaDb m;
  std::string why;
  EXPECT_FALSE(pitstop::config::parse_redis_url("redis://", r, why));
  EXPECT_FALSE(pitstop::config::parse_redis_url("redis://h:0", r, why));
  EXPECT_FALSE(pitstop::config::parse_redis_url("redis://:%zz@h", r, why));
  EXPECT_FALSE(pitstop::config::parse_redis_url("redis://:%4@h", r, why));
  EXPECT_FALSE(pitstop::config::parse_redis_url("redis://[::1:6379", r, why));
  EXPECT_TRUE(pitstop::config::parse_redis_url("redis://[::1]:6379/3", r, why)) << why;
  EXPECT_EQ(r.host, "::1");
  EXPECT_EQ(r.db, 3);
  EXPECT_TRUE(pitstop::config::parse_mariadb_url("mysql://u%3Ax:p%40ss@db.example:3307/work%20shop", m, why)) << why;
  EXPECT_EQ(m.user, "u:x");
  EXPECT_EQ(m.password, "p@ss");
  EXPECT_EQ(m.database, "work shop");
  EXPECT_EQ(m.port, 3307);
  EXPECT_FALSE(pitstop::config::parse_mariadb_url("mariadb://u@h:3306/a/b", m, why));
  EXPECT_FALSE(pitstop::config::parse_mariadb_url("postgres://u@h/db", m, why));
}

// The README documents every variable pitstop --list-env prints.
TEST(Config, ReadmeListsEveryEnvironmentVariable) {
  auto c = load((pitstop::test::source_dir() / "config/pitstop.json").string(), kNoEnv);
  std::ifstream in(pitstop::test::source_dir() / "README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  auto vars = pitstop::config::env_variables(c);
  EXPECT_GT(vars.size(), 40u);
  std::set<std::string> names;
  for (const auto& v : vars) {
    EXPECT_TRUE(names.insert(v.name).second) << "duplicate variable " << v.name;
    EXPECT_NE(readme.find("`" + v.name + "`"), std::string::npos) << v.name << " is not in README.md";
  }
}
