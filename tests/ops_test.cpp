// Operating pitstop (issue 14): the admin listener, /metrics against the requests made, /admin/status,
// the admin token, the access log's lines, request ids, redaction and reopening.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "proxy/config/config.hpp"
#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using namespace pitstop::test;
namespace fs = std::filesystem;

namespace {

const std::string kCatalog = "/api/method/universal_workshop.api.get_service_catalog";

std::string unique_site() {
  static int n = 0;
  return "opstest-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

RawClient::Response request(std::uint16_t port, const std::string& target, std::vector<std::string> headers = {},
                            const std::string& method = "GET") {
  auto r = http_request(port, method, target, headers);
  if (!r) throw std::runtime_error("no answer for " + target);
  return *r;
}

PromText scrape(const Pitstop& p) {
  auto r = request(p.admin_port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.headers["content-type"].starts_with("text/plain; version=0.0.4")) << r.headers["content-type"];
  return parse_prometheus(r.body);
}

// The access log's lines, less the readiness probes the test support sends while pitstop starts.
std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    if (l.find("\"path\":\"/readyz\"") == std::string::npos) out.push_back(l);
  return out;
}

// The file's lines once it has at least `n` (the log is written within 200 ms).
std::vector<std::string> wait_lines(const fs::path& p, std::size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (true) {
    auto lines = lines_of(p);
    if (lines.size() >= n || std::chrono::steady_clock::now() > deadline) return lines;
    std::this_thread::sleep_for(50ms);
  }
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class Ops : public ::testing::Test {
 protected:
  Ops() : alice_(service_config().mariadb.primary, "ops-alice-" + std::to_string(::getpid()) + "@example.com") {}
  ApiUser alice_;
};

}  // namespace

TEST_F(Ops, MetricsCountTheRequestsMadeAndFollowPrometheusConventions) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  ASSERT_NE(p.admin_port(), 0);
  const PromText before = scrape(p);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(request(p.port(), kCatalog, {alice_.token_header()}).status, 200);
  EXPECT_EQ(request(p.port(), kCatalog).status, 401);
  EXPECT_EQ(request(p.port(), "/api/method/no.such.thing", {alice_.token_header()}).status, 404);
  const PromText m = scrape(p);

  EXPECT_EQ(m.sum("pitstop_requests_total", {{"rule", "service_catalog"}, {"method", "get"}, {"status", "200"}}), 5);
  EXPECT_EQ(m.sum("pitstop_requests_total", {{"rule", "service_catalog"}, {"status", "401"}}), 1);
  EXPECT_EQ(m.sum("pitstop_requests_total", {{"rule", ""}, {"status", "404"}}), 1);
  EXPECT_GE(m.sum("pitstop_requests_total", {{"rule", "-health"}, {"status", "200"}}), 1);  // the support's readiness probes
  // One fetch stored the answer; the four after it were hits (L1 is shared by the workers).
  EXPECT_EQ(m.sum("pitstop_cache_outcomes_total", {{"rule", "service_catalog"}, {"outcome", "stored"}}), 1);
  EXPECT_EQ(m.sum("pitstop_cache_outcomes_total", {{"rule", "service_catalog"}, {"outcome", "l1_hit"}}) +
                m.sum("pitstop_cache_outcomes_total", {{"rule", "service_catalog"}, {"outcome", "redis_hit"}}),
            4);
  EXPECT_EQ(m.sum("pitstop_cache_outcomes_total", {{"rule", "service_catalog"}, {"category", "service_catalog"}, {"outcome", "refused"}}), 1);
  EXPECT_EQ(m.sum("pitstop_origin_fetch_duration_seconds_count", {{"origin", "sql"}}), 1);
  EXPECT_GE(m.sum("pitstop_request_duration_seconds_count", {{"path", "read"}}), 6);
  EXPECT_GT(m.sum("pitstop_mariadb_query_duration_seconds_count") - before.sum("pitstop_mariadb_query_duration_seconds_count"), 0);
  EXPECT_GT(m.sum("pitstop_redis_command_duration_seconds_count", {{"redis", "cache"}}), 0);
  EXPECT_EQ(m.sum("pitstop_ratelimit_decisions_total", {{"method", "get"}, {"result", "allowed"}}) -
                before.sum("pitstop_ratelimit_decisions_total", {{"method", "get"}, {"result", "allowed"}}),
            7);
  EXPECT_GE(m.sum("pitstop_identity_total", {{"result", "miss"}}), 1);
  EXPECT_GT(m.sum("pitstop_l1_bytes"), 0);
  EXPECT_GE(m.sum("pitstop_l1_entries"), 1);
  EXPECT_EQ(m.sum("pitstop_up", {{"server", "mariadb"}}), 1);
  EXPECT_EQ(m.sum("pitstop_up", {{"server", "redis_cache"}}), 1);
  EXPECT_GE(m.sum("pitstop_outbox_backlog"), 0);
  EXPECT_EQ(m.sum("pitstop_scrape_workers_missing"), 0);
  // Latency buckets from 50 µs to 10 s.
  std::set<std::string> bounds;
  for (const auto& s : m.samples)
    if (s.name == "pitstop_request_duration_seconds_bucket" && s.labels.at("path") == "read") bounds.insert(s.labels.at("le"));
  EXPECT_TRUE(bounds.count("5e-05") && bounds.count("10") && bounds.count("+Inf")) << bounds.size();

  // Conventions: the pitstop_ prefix, _total counters, base units, bounded labels.
  const std::set<std::string> allowed = {"rule", "method", "status", "path", "category", "outcome", "origin", "decided_by", "result",
                                         "redis", "server", "state", "reason", "worker", "version", "le"};
  for (const auto& [family, type] : m.types) {
    EXPECT_TRUE(family.starts_with("pitstop_")) << family;
    if (type == "counter") {
      EXPECT_TRUE(family.ends_with("_total")) << family;
    }
    if (type == "histogram") {
      EXPECT_TRUE(family.ends_with("_seconds")) << family;
    }
  }
  for (const auto& s : m.samples)
    for (const auto& [k, v] : s.labels) EXPECT_TRUE(allowed.count(k)) << s.name << " has label " << k;
}

TEST_F(Ops, StatusIsJsonAndTheTokenGuardsEverythingButMetrics) {
  const std::string token = "ops-test-admin-token-0123456789";
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_ADMIN_TOKEN", token}});
  EXPECT_EQ(request(p.admin_port(), "/admin/status").status, 401);
  EXPECT_EQ(request(p.admin_port(), "/admin/status", {"Authorization: Bearer wrong-token-wrong-token"}).status, 401);
  EXPECT_EQ(request(p.admin_port(), "/admin/status", {"Authorization: Bearer " + token + "x"}).status, 401);
  EXPECT_EQ(request(p.admin_port(), "/metrics").status, 200);
  request(p.port(), kCatalog, {alice_.token_header()});
  auto r = request(p.admin_port(), "/admin/status", {"Authorization: Bearer " + token});
  ASSERT_EQ(r.status, 200) << r.body;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS) << r.body;
  EXPECT_EQ(std::string(doc["version"].get_string().value()), "0.1.0");
  EXPECT_EQ(std::string_view(doc["config"]["digest"].get_string().value()).size(), 16u);
  EXPECT_EQ(doc["workers"].get_array().size(), 2u);
  EXPECT_TRUE(doc["redis"]["cache"]["up"].get_bool().value());
  EXPECT_TRUE(doc["mariadb"]["up"].get_bool().value());
  EXPECT_GT(doc["l1"]["bytes"].get_double().value(), 0);
  EXPECT_GE(doc["uptime_s"].get_double().value(), 0);
  EXPECT_EQ(r.body.find(token), std::string::npos);
  EXPECT_EQ(request(p.admin_port(), "/admin/nothing", {"Authorization: Bearer " + token}).status, 404);
  // The public port does not answer admin paths.
  EXPECT_NE(request(p.port(), "/metrics", {alice_.token_header()}).status, 200);
}

TEST(OpsConfig, APublicAdminListenerNeedsAToken) {
  const auto file = (source_dir() / "config/pitstop.json").string();
  const char* open_env[] = {"PITSTOP_ADMIN_LISTEN=0.0.0.0:9145", nullptr};
  try {
    pitstop::config::load(file, open_env);
    ADD_FAILURE() << "a public admin listener without a token was accepted";
  } catch (const pitstop::config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("$.admin.token"), std::string::npos) << e.what();
  }
  const char* tokened[] = {"PITSTOP_ADMIN_LISTEN=0.0.0.0:9145", "PITSTOP_ADMIN_TOKEN=a-long-enough-admin-token", nullptr};
  EXPECT_NO_THROW(pitstop::config::load(file, tokened));
  const char* short_token[] = {"PITSTOP_ADMIN_TOKEN=short", nullptr};
  EXPECT_THROW(pitstop::config::load(file, short_token), pitstop::config::ConfigError);
  const char* off[] = {"PITSTOP_ADMIN_LISTEN=off", nullptr};
  EXPECT_FALSE(pitstop::config::load(file, off).admin.enabled);
}

TEST_F(Ops, AccessLogHasALinePerRequestWithItsFieldsAndNoSecretAnywhere) {
  const fs::path file = scratch_dir() / ("access-" + unique_site() + ".log");
  const auto cfg = service_config();
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_LOG_ACCESS", file.string()}});
  auto first = request(p.port(), kCatalog + "?api_secret=" + alice_.secret() + "&x=1", {alice_.token_header(), "X-Request-Id: ops-req-1"});
  EXPECT_EQ(first.headers["x-request-id"], "ops-req-1");
  auto generated = request(p.port(), kCatalog, {alice_.token_header(), "X-Request-Id: bad id with spaces"});
  const std::string gen_id = generated.headers["x-request-id"];
  EXPECT_TRUE(std::regex_match(gen_id, std::regex("[0-9a-f]{16}"))) << gen_id;
  EXPECT_NE(request(p.port(), kCatalog, {alice_.token_header()}).headers["x-request-id"], gen_id);
  request(p.port(), kCatalog, {"Authorization: Basic " + std::string("b3BzOnNlY3JldC1iYXNpYy1wYXNzd29yZA==")});
  request(p.port(), kCatalog, {"Cookie: sid=ops-secret-session-cookie-value"});
  const auto lines = wait_lines(file, 5);
  ASSERT_EQ(lines.size(), 5u) << slurp(file);
  simdjson::dom::parser parser;
  bool found = false;
  for (const auto& line : lines) {
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
    for (const char* field : {"time", "request_id", "client", "user", "method", "path", "rule", "status", "bytes", "cache", "total_ms",
                              "origin_ms", "ratelimit_remaining"})
      EXPECT_FALSE(doc[field].error()) << field << " missing in " << line;
    if (std::string_view(doc["request_id"].get_string().value()) != "ops-req-1") continue;
    found = true;
    EXPECT_EQ(std::string(doc["user"].get_string().value()), alice_.name());
    EXPECT_EQ(std::string(doc["client"].get_string().value()), "127.0.0.1");
    EXPECT_EQ(std::string(doc["method"].get_string().value()), "GET");
    EXPECT_EQ(std::string(doc["rule"].get_string().value()), "service_catalog");
    EXPECT_EQ(doc["status"].get_uint64().value(), 200u);
    EXPECT_EQ(doc["bytes"].get_uint64().value(), first.body.size());
    EXPECT_EQ(std::string(doc["path"].get_string().value()), kCatalog + "?api_secret=REDACTED&x=1");
    EXPECT_FALSE(std::string(doc["cache"].get_string().value()).empty());
    EXPECT_GE(doc["total_ms"].get_double().value(), 0);
    EXPECT_GT(doc["ratelimit_remaining"].get_int64().value(), 0);
  }
  EXPECT_TRUE(found);
  // No credential in the log, the metrics or the status.
  const std::string everything = slurp(file) + request(p.admin_port(), "/metrics").body + request(p.admin_port(), "/admin/status").body;
  for (const std::string& secret : {alice_.secret(), alice_.key() + ":" + alice_.secret(), std::string("b3BzOnNlY3JldC1iYXNpYy1wYXNzd29yZA=="),
                                    std::string("ops-secret-session-cookie-value"), cfg.auth.encryption_key})
    EXPECT_EQ(everything.find(secret), std::string::npos) << "a secret leaked: " << secret;
  EXPECT_EQ(everything.find("Authorization"), std::string::npos);
}

TEST_F(Ops, AccessLogIsReopenedOnSigusr1AfterItWasMoved) {
  const fs::path file = scratch_dir() / ("access-rot-" + unique_site() + ".log");
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_LOG_ACCESS", file.string()}});
  request(p.port(), kCatalog, {alice_.token_header(), "X-Request-Id: before-rotation"});
  ASSERT_EQ(wait_lines(file, 1).size(), 1u);
  fs::rename(file, file.string() + ".1");
  p.process().signal(SIGUSR1);
  // The reopening happens on the log's thread: until the file exists again, lines may still go to
  // the old one, so keep asking until one lands in the new file.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!fs::exists(file) && std::chrono::steady_clock::now() < deadline) {
    request(p.port(), kCatalog, {alice_.token_header(), "X-Request-Id: after-rotation"});
    std::this_thread::sleep_for(100ms);
  }
  const auto lines = wait_lines(file, 1);
  ASSERT_GE(lines.size(), 1u);
  EXPECT_NE(lines[0].find("after-rotation"), std::string::npos);
  EXPECT_NE(slurp(file.string() + ".1").find("before-rotation"), std::string::npos);
  EXPECT_TRUE(p.process().running());
}

TEST_F(Ops, RelayedRequestsAreCountedLoggedAndCarryTheRequestId) {
  StandIn erp;
  const fs::path file = scratch_dir() / ("access-relay-" + unique_site() + ".log");
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_UPSTREAM_URL", erp.url()}, {"PITSTOP_LOG_ACCESS", file.string()}});
  auto r = request(p.port(), "/__standin/echo?password=hunter2", {"X-Request-Id: relay-id-1"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["x-request-id"], "relay-id-1");
  EXPECT_NE(r.body.find("relay-id-1"), std::string::npos) << "the ERP did not get the request id: " << r.body;
  auto generated = request(p.port(), "/__standin/echo");
  EXPECT_TRUE(std::regex_match(generated.headers["x-request-id"], std::regex("[0-9a-f]{16}")));
  const auto lines = wait_lines(file, 2);
  ASSERT_EQ(lines.size(), 2u);
  // Workers write their own buffers: lines of different workers need not be in order.
  const std::string line = lines[0].find("relay-id-1") != std::string::npos ? lines[0] : lines[1];
  EXPECT_NE(line.find("\"request_id\":\"relay-id-1\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"rule\":\"-relay\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"status\":200"), std::string::npos) << line;
  EXPECT_NE(line.find("password=REDACTED"), std::string::npos) << line;
  EXPECT_EQ(slurp(file).find("hunter2"), std::string::npos);
  const PromText m = scrape(p);
  EXPECT_EQ(m.sum("pitstop_requests_total", {{"rule", "-relay"}, {"status", "200"}}), 2);
  EXPECT_EQ(m.sum("pitstop_request_duration_seconds_count", {{"path", "relay"}}), 2);
}

namespace {

// config/pitstop.json copied for a test (its rules a copy too, so that both can be edited), and
// edited in place by the test.
class ConfigCopy {
 public:
  explicit ConfigCopy(const std::string& name) {
    rules_ = rules_copy("workshop.json", name + "-rules.json", [](std::string&) {});
    path_ = (scratch_dir() / (name + "-config.json")).string();
    text_ = slurp(source_dir() / "config/pitstop.json");
    replace("\"rules\": \"../rules/workshop.json\"", "\"rules\": \"" + rules_ + "\"");
  }
  const std::string& path() const { return path_; }
  void replace(const std::string& from, const std::string& to) {
    const auto at = text_.find(from);
    if (at == std::string::npos) throw std::runtime_error("not in the config: " + from);
    text_.replace(at, from.size(), to);
    std::ofstream(path_, std::ios::trunc) << text_;
  }
  void write_raw(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  void edit_rules(const std::string& from, const std::string& to) {
    std::string r = slurp(rules_);
    const auto at = r.find(from);
    if (at == std::string::npos) throw std::runtime_error("not in the rules: " + from);
    r.replace(at, from.size(), to);
    std::ofstream(rules_, std::ios::trunc) << r;
  }

 private:
  std::string rules_, path_, text_;
};

long ttl_of(const std::string& cache_status) {
  const auto pos = cache_status.find("ttl=");
  return pos == std::string::npos ? -999999 : std::stol(cache_status.substr(pos + 4));
}

RawClient::Response reload(const Pitstop& p) { return request(p.admin_port(), "/admin/reload", {}, "POST"); }

const std::string kSummaryOf = "/api/method/universal_workshop.api.get_customer_summary?customer=";

}  // namespace

TEST_F(Ops, AReloadAppliesTtlsAndRulesToNewRequestsWithoutDroppingConnections) {
  ConfigCopy cfg("reload-good-" + unique_site());
  Pitstop p({{"PITSTOP_SITE", unique_site()}}, true, cfg.path());
  RawClient kept(p.port());
  auto ask = [&](const std::string& target) {
    EXPECT_TRUE(kept.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n" + alice_.token_header() + "\r\n\r\n"));
    auto r = kept.read_response();
    if (!r) throw std::runtime_error("no answer on the kept connection");
    return *r;
  };
  // A miss stores the entry; the hit after it says its TTL.
  ASSERT_EQ(ask(kSummaryOf + "CUST-00001").status, 200);
  auto before = ask(kSummaryOf + "CUST-00001");
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_GT(ttl_of(before.headers["cache-status"]), 1000) << before.headers["cache-status"];

  cfg.replace("\"customer_summary\":   { \"ttl_s\": 1800", "\"customer_summary\":   { \"ttl_s\": 60");
  auto r = reload(p);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"ok\":true"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"needs_restart\":[]"), std::string::npos) << r.body;

  // The connection opened before the reload carries on; a new entry has the new TTL, the entry
  // stored before keeps its own.
  ASSERT_EQ(ask(kSummaryOf + "CUST-00002").status, 200);
  auto fresh = ask(kSummaryOf + "CUST-00002");
  ASSERT_EQ(fresh.status, 200) << fresh.body;
  EXPECT_GT(ttl_of(fresh.headers["cache-status"]), 0);
  EXPECT_LE(ttl_of(fresh.headers["cache-status"]), 60);
  EXPECT_GT(ttl_of(ask(kSummaryOf + "CUST-00001").headers["cache-status"]), 1000);

  // SIGHUP does the same for the rules: a role the user lacks now guards the catalog.
  EXPECT_EQ(ask(kCatalog).status, 200);
  cfg.edit_rules("\"name\": \"service_catalog\",", "\"name\": \"service_catalog\", \"roles\": [\"No Such Role Here\"],");
  p.process().signal(SIGHUP);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  int status = 0;
  while ((status = ask(kCatalog).status) != 403 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(status, 403);
  const PromText m = scrape(p);
  EXPECT_EQ(m.sum("pitstop_config_reloads_total", {{"result", "ok"}}), 2);
  EXPECT_EQ(m.sum("pitstop_config_reloads_total", {{"result", "failed"}}), 0);
  EXPECT_TRUE(p.process().running());
}

TEST_F(Ops, ABadReloadKeepsWhatRunsAndSaysWhy) {
  ConfigCopy cfg("reload-bad-" + unique_site());
  Pitstop p({{"PITSTOP_SITE", unique_site()}}, true, cfg.path());
  const auto digest = [&] {
    auto s = request(p.admin_port(), "/admin/status");
    const auto at = s.body.find("\"digest\":\"");
    return s.body.substr(at + 10, 16);
  };
  const std::string running = digest();
  const std::string good = slurp(cfg.path());

  cfg.write_raw(good.substr(0, good.size() / 2));  // cut in the middle
  auto r = reload(p);
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find(cfg.path()), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"ok\":false"), std::string::npos) << r.body;

  cfg.write_raw(good);
  cfg.replace("\"workers\": 0,", "\"workers\": 0, \"wrokers\": 1,");
  r = reload(p);
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("$.wrokers"), std::string::npos) << r.body;

  cfg.write_raw(good);
  cfg.edit_rules("\"category\": \"service_catalog\",", "\"category\": \"no_such_category\",");
  r = reload(p);
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("no_such_category"), std::string::npos) << r.body;

  EXPECT_EQ(digest(), running);
  EXPECT_EQ(request(p.port(), kCatalog, {alice_.token_header()}).status, 200);
  const PromText m = scrape(p);
  EXPECT_EQ(m.sum("pitstop_config_reloads_total", {{"result", "failed"}}), 3);
  EXPECT_NE(request(p.admin_port(), "/admin/status").body.find("last_reload_error"), std::string::npos);
  EXPECT_EQ(request(p.admin_port(), "/admin/reload").status, 405);  // GET: a reload is a POST
}

TEST_F(Ops, AReloadNamesWhatNeedsARestartAndLeavesItAsItRuns) {
  ConfigCopy cfg("reload-restart-" + unique_site());
  Pitstop p({{"PITSTOP_SITE", unique_site()}}, true, cfg.path());
  cfg.replace("\"l1_bytes\": 67108864", "\"l1_bytes\": 1000000");
  cfg.replace("\"header_read_ms\": 10000", "\"header_read_ms\": 9000");
  cfg.replace("\"get\":    { \"limit\": 200,", "\"get\":    { \"limit\": 150,");
  auto r = reload(p);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("$.cache.l1_bytes"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("$.timeouts"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("rate_limits"), std::string::npos) << r.body;  // that one reloads
  const PromText m = scrape(p);
  EXPECT_EQ(m.sum("pitstop_l1_max_bytes"), 67108864);
  EXPECT_EQ(request(p.port(), kCatalog, {alice_.token_header()}).status, 200);
}
