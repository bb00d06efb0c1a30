// The cached read path end to end: the pitstop binary against real Redis and MariaDB.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <future>
#include <set>
#include <thread>

#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using namespace pitstop::test;

namespace {

const std::string kSummary = "/api/method/universal_workshop.api.get_customer_summary?customer=CUST-00001";

std::string unique_site() {
  static int n = 0;
  return "readtest-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The ttl= of a Cache-Status, or a value no test expects.
long ttl_of(const std::string& status) {
  auto pos = status.find("ttl=");
  return pos == std::string::npos ? -999999 : std::stol(status.substr(pos + 4));
}

RawClient::Response get(std::uint16_t port, const std::string& target, std::vector<std::string> headers) {
  auto r = http_request(port, "GET", target, headers);
  if (!r) throw std::runtime_error("no answer for " + target);
  return *r;
}

class ReadPath : public ::testing::Test {
 protected:
  ReadPath() : alice_(service_config().mariadb.primary, "readpath-alice-" + std::to_string(::getpid()) + "@example.com"),
               bob_(service_config().mariadb.primary, "readpath-bob-" + std::to_string(::getpid()) + "@example.com") {}
  ApiUser alice_, bob_;
};

}  // namespace

TEST_F(ReadPath, MissThenHitWithTheSameBodyAndEtag) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto first = get(p.port(), kSummary, {alice_.token_header()});
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(cache_status(first), "pitstop; fwd=uri-miss; stored");
  EXPECT_EQ(json_field(first.body, {"message", "customer", "name"}), "CUST-00001");
  auto second = get(p.port(), kSummary, {alice_.token_header()});
  ASSERT_EQ(second.status, 200);
  EXPECT_TRUE(has(cache_status(second), "pitstop; hit; ttl=")) << cache_status(second);
  EXPECT_GE(ttl_of(cache_status(second)), 1790) << cache_status(second);  // customer_summary: 30 min
  EXPECT_LE(ttl_of(cache_status(second)), 1800) << cache_status(second);
  EXPECT_TRUE(has(cache_status(second), "detail=l1")) << cache_status(second);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.headers["etag"], first.headers["etag"]);
  EXPECT_EQ(second.headers["content-type"], "application/json");
  // Query order, encoding and unknown parameters don't make a new entry.
  auto third = get(p.port(), "/api/method/universal_workshop.api.get_customer_summary?_=1&customer=CUST%2D00001", {alice_.token_header()});
  EXPECT_TRUE(has(cache_status(third), "hit")) << cache_status(third);
}

TEST_F(ReadPath, EveryEndpointAndResourceReadIsServedAndCached) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  const std::string targets[] = {
      "/api/method/universal_workshop.api.get_service_catalog",
      kSummary,
      "/api/method/universal_workshop.api.get_vehicle_history?vehicle=VEH-00001",
      "/api/method/universal_workshop.api.get_technician_skills?technician=TECH-0001",
      "/api/method/universal_workshop.api.get_workshop_schedule?date=2026-03-02",
      "/api/method/universal_workshop.api.get_parts_availability?item_code=ITEM-00001",
      "/api/resource/Service%20Order/SO-2026-00001",
      "/api/resource/Customer?fields=%5B%22name%22%2C%22customer_name%22%5D&limit_page_length=5",
  };
  for (const auto& t : targets) {
    auto a = get(p.port(), t, {alice_.token_header()});
    ASSERT_EQ(a.status, 200) << t << ": " << a.body;
    EXPECT_TRUE(has(cache_status(a), "stored")) << t << ": " << cache_status(a);
    auto b = get(p.port(), t, {alice_.token_header()});
    EXPECT_TRUE(has(cache_status(b), "hit")) << t << ": " << cache_status(b);
    EXPECT_EQ(a.body, b.body) << t;
  }
  auto doc = get(p.port(), "/api/resource/Service%20Order/SO-2026-00001", {alice_.token_header()});
  EXPECT_EQ(json_field(doc.body, {"data", "doctype"}), "Service Order");
  EXPECT_TRUE(has(doc.body, "\"items\":[{")) << doc.body;
  EXPECT_TRUE(has(doc.body, "\"doctype\":\"Service Order Item\"")) << doc.body;
  EXPECT_FALSE(has(doc.body, ":null")) << "documents leave NULL fields out, as Frappe does: " << doc.body;
}

TEST_F(ReadPath, CategoriesSetTheTtl) {
  Pitstop p({{"PITSTOP_SITE", unique_site()},
             {"PITSTOP_CACHE_CATEGORIES_PARTS_AVAILABILITY_TTL_S", "1"},
             {"PITSTOP_CACHE_CATEGORIES_PARTS_AVAILABILITY_STALE_WHILE_REVALIDATE_S", "0"},
             {"PITSTOP_CACHE_CATEGORIES_PARTS_AVAILABILITY_STALE_IF_ERROR_S", "0"}});
  const std::string parts = "/api/method/universal_workshop.api.get_parts_availability?item_code=ITEM-00002";
  get(p.port(), parts, {alice_.token_header()});
  auto hit = get(p.port(), parts, {alice_.token_header()});
  EXPECT_TRUE(has(cache_status(hit), "hit; ttl=")) << cache_status(hit);
  EXPECT_LE(ttl_of(cache_status(hit)), 1) << cache_status(hit);
  get(p.port(), "/api/method/universal_workshop.api.get_service_catalog", {alice_.token_header()});
  auto catalog = get(p.port(), "/api/method/universal_workshop.api.get_service_catalog", {alice_.token_header()});
  EXPECT_GE(ttl_of(cache_status(catalog)), 3590) << cache_status(catalog);  // service_catalog: 1 h
  EXPECT_LE(ttl_of(cache_status(catalog)), 3600) << cache_status(catalog);
  std::this_thread::sleep_for(1200ms);
  auto expired = get(p.port(), parts, {alice_.token_header()});
  EXPECT_EQ(expired.status, 200);
  EXPECT_TRUE(has(cache_status(expired), "stored")) << cache_status(expired);
  EXPECT_FALSE(has(cache_status(expired), "hit")) << cache_status(expired);
}

TEST_F(ReadPath, RedisSharesEntriesAcrossInstancesAndRestarts) {
  const std::string site = unique_site();
  auto first = std::make_unique<Pitstop>(std::map<std::string, std::string>{{"PITSTOP_SITE", site}});
  auto stored = get(first->port(), kSummary, {alice_.token_header()});
  ASSERT_TRUE(has(cache_status(stored), "stored"));
  Pitstop second({{"PITSTOP_SITE", site}});
  auto other = get(second.port(), kSummary, {alice_.token_header()});
  EXPECT_TRUE(has(cache_status(other), "hit")) << cache_status(other);
  EXPECT_TRUE(has(cache_status(other), "detail=redis")) << cache_status(other);
  EXPECT_EQ(other.body, stored.body);
  EXPECT_EQ(first->stop(), 0);
  first = std::make_unique<Pitstop>(std::map<std::string, std::string>{{"PITSTOP_SITE", site}});
  auto restarted = get(first->port(), kSummary, {alice_.token_header()});
  EXPECT_TRUE(has(cache_status(restarted), "detail=redis")) << cache_status(restarted);
  // Another site shares nothing.
  Pitstop foreign({{"PITSTOP_SITE", unique_site()}});
  EXPECT_TRUE(has(cache_status(get(foreign.port(), kSummary, {alice_.token_header()})), "fwd=uri-miss"));
}

TEST_F(ReadPath, ReadsWorkWithRedisDown) {
  RedisServer cache;
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_REDIS_CACHE_URL", cache.url()}});
  auto before = get(p.port(), kSummary, {alice_.token_header()});
  ASSERT_TRUE(has(cache_status(before), "stored"));
  cache.stop();
  // What L1 holds is still served; what it doesn't comes from the origin, and says so.
  auto l1 = get(p.port(), kSummary, {alice_.token_header()});
  EXPECT_EQ(l1.status, 200);
  EXPECT_TRUE(has(cache_status(l1), "detail=l1")) << cache_status(l1);
  for (int i = 0; i < 3; ++i) {
    auto fresh = get(p.port(), "/api/method/universal_workshop.api.get_technician_skills?technician=TECH-000" + std::to_string(i + 1),
                     {alice_.token_header()});
    EXPECT_EQ(fresh.status, 200) << fresh.body;
    EXPECT_TRUE(has(cache_status(fresh), "detail=redis-down")) << cache_status(fresh);
  }
  auto ready = http_get(p.port(), "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_TRUE(has(ready->body, "\"redis_cache\":{\"ok\":false")) << ready->body;
}

TEST_F(ReadPath, UserScopeIsSharedOnlyByThoseWhoMaySeeTheSame) {
  // carol sees one customer only (a user permission); dave, a Service Advisor, also sees the
  // customer's credit limit (permission level 1). alice and bob see the same: one entry.
  const auto db = service_config().mariadb.primary;
  ApiUser carol(db, "readpath-carol-" + std::to_string(::getpid()) + "@example.com");
  ApiUser dave(db, "readpath-dave-" + std::to_string(::getpid()) + "@example.com", {"Service Advisor"});
  const std::string up = "readpath-up-" + std::to_string(::getpid());
  mariadb_sql(db, "INSERT INTO `tabUser Permission` (name, user, allow, for_value) VALUES ('" + up + "', '" + carol.name() +
                      "', 'Customer', 'CUST-00001')");
  struct Cleanup {
    std::string sql;
    ~Cleanup() { mariadb_sql(service_config().mariadb.primary, sql); }
  } cleanup{"DELETE FROM `tabUser Permission` WHERE name = '" + up + "'"};
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  const std::string doc = "/api/resource/Customer/CUST-00002";
  auto a = get(p.port(), doc, {alice_.token_header()});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_FALSE(has(a.body, "credit_limit")) << "a field above alice's level: " << a.body;
  auto b = get(p.port(), doc, {bob_.token_header()});
  ASSERT_EQ(b.status, 200);
  EXPECT_TRUE(has(cache_status(b), "hit")) << "bob may see what alice sees: " << cache_status(b);
  auto c = get(p.port(), doc, {carol.token_header()});
  EXPECT_EQ(c.status, 403) << "carol got an entry of someone who may see more: " << c.body;
  EXPECT_FALSE(has(c.body, "customer_name")) << c.body;
  auto d = get(p.port(), doc, {dave.token_header()});
  ASSERT_EQ(d.status, 200);
  EXPECT_TRUE(has(cache_status(d), "fwd=uri-miss")) << "dave got alice's entry: " << cache_status(d);
  EXPECT_TRUE(has(d.body, "\"credit_limit\"")) << d.body;
  EXPECT_TRUE(has(cache_status(get(p.port(), doc, {alice_.token_header()})), "hit"));
  EXPECT_TRUE(has(cache_status(get(p.port(), doc, {dave.token_header()})), "hit"));
  EXPECT_FALSE(has(get(p.port(), doc, {bob_.token_header()}).body, "credit_limit"));
  // Shared scope (the method endpoints): one entry for everyone.
  get(p.port(), kSummary, {alice_.token_header()});
  EXPECT_TRUE(has(cache_status(get(p.port(), kSummary, {bob_.token_header()})), "hit"));
  // Nobody without a verified identity gets cached data.
  auto anon = get(p.port(), kSummary, {});
  EXPECT_EQ(anon.status, 401);
  EXPECT_FALSE(has(anon.body, "CUST-00001"));
  auto wrong = get(p.port(), kSummary, {"Authorization: token " + alice_.key() + ":wrong"});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_TRUE(has(wrong.body, "\"exc_type\":\"AuthenticationError\""));
  auto malformed = get(p.port(), kSummary, {"Authorization: token"});
  EXPECT_EQ(malformed.status, 400);
  auto basic = get(p.port(), kSummary, {"Authorization: Basic " + std::string("bm90OmJhc2U2NA==")});
  EXPECT_EQ(basic.status, 401);
  EXPECT_EQ(cache_status(basic), "pitstop; detail=refused");
}

TEST_F(ReadPath, EveryCredentialFormReachesTheCache) {
  const auto db = service_config().mariadb.primary;
  const std::string sid = "readpath-sid-" + std::to_string(::getpid());
  const std::string token = "readpath-bearer-" + std::to_string(::getpid());
  mariadb_sql(db, "INSERT INTO `tabSessions` (user, sid, sessiondata, lastupdate, status) VALUES ('" + alice_.name() + "', '" + sid +
                      "', '{}', NOW(6), 'Active');\n"
                      "INSERT INTO `tabOAuth Bearer Token` (name, user, access_token, expiration_time, status) VALUES ('" + token +
                      "', '" + alice_.name() + "', '" + token + "', NOW(6) + INTERVAL 1 HOUR, 'Active');");
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  // Basic base64(key:secret), computed by the shell's base64 would do; build it here.
  static const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string plain = alice_.key() + ":" + alice_.secret(), b64;
  for (std::size_t i = 0; i < plain.size(); i += 3) {
    unsigned n = static_cast<unsigned char>(plain[i]) << 16;
    if (i + 1 < plain.size()) n |= static_cast<unsigned char>(plain[i + 1]) << 8;
    if (i + 2 < plain.size()) n |= static_cast<unsigned char>(plain[i + 2]);
    b64 += kB64[(n >> 18) & 63];
    b64 += kB64[(n >> 12) & 63];
    b64 += i + 1 < plain.size() ? kB64[(n >> 6) & 63] : '=';
    b64 += i + 2 < plain.size() ? kB64[n & 63] : '=';
  }
  const std::string doc = "/api/resource/Customer/CUST-00003";
  for (const std::string& h : {alice_.token_header(), "Authorization: Basic " + b64, "Authorization: Bearer " + token,
                               "Cookie: system_user=yes; sid=" + sid + "; full_name=Alice"}) {
    auto r = get(p.port(), doc, {h});
    EXPECT_EQ(r.status, 200) << h << ": " << r.body;
  }
  // All four are alice: one user-scoped entry, stored once.
  EXPECT_TRUE(has(cache_status(get(p.port(), doc, {"Cookie: sid=" + sid})), "hit"));
  auto expired = get(p.port(), doc, {"Cookie: sid=no-such-session"});
  EXPECT_EQ(expired.status, 401);
  EXPECT_TRUE(has(expired.body, "SessionExpired")) << expired.body;
  mariadb_sql(db, "DELETE FROM `tabSessions` WHERE sid = '" + sid + "'; DELETE FROM `tabOAuth Bearer Token` WHERE name = '" + token + "';");
}

TEST_F(ReadPath, EtagRevalidationAnswers304) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto full = get(p.port(), kSummary, {alice_.token_header()});
  const std::string etag = full.headers["etag"];
  ASSERT_FALSE(etag.empty());
  auto not_modified = get(p.port(), kSummary, {alice_.token_header(), "If-None-Match: W/\"other\", " + etag});
  EXPECT_EQ(not_modified.status, 304);
  EXPECT_TRUE(not_modified.body.empty());
  EXPECT_EQ(not_modified.headers["etag"], etag);
  EXPECT_FALSE(cache_status(not_modified).empty());
  auto changed = get(p.port(), kSummary, {alice_.token_header(), "If-None-Match: \"nope\""});
  EXPECT_EQ(changed.status, 200);
  EXPECT_EQ(changed.body, full.body);
  // Validation comes after identification: a bad credential with a good ETag is still a 401.
  EXPECT_EQ(get(p.port(), kSummary, {"If-None-Match: " + etag}).status, 401);
}

TEST_F(ReadPath, ErrorsAreAnsweredButNeverCached) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  const std::string missing = "/api/method/universal_workshop.api.get_customer_summary?customer=NOBODY";
  for (int i = 0; i < 2; ++i) {
    auto r = get(p.port(), missing, {alice_.token_header()});
    EXPECT_EQ(r.status, 404);
    EXPECT_TRUE(has(r.body, "\"exc_type\":\"DoesNotExistError\""));
    EXPECT_TRUE(has(r.body, "Customer NOBODY not found"));
    EXPECT_EQ(cache_status(r), "pitstop; fwd=uri-miss; fwd-status=404");
  }
  auto doc = get(p.port(), "/api/resource/Service%20Order/SO-0000-00000", {alice_.token_header()});
  EXPECT_EQ(doc.status, 404);
  EXPECT_TRUE(has(doc.body, "Service Order SO-0000-00000 not found"));
}

TEST_F(ReadPath, HostileRequestsGet4xxAndLeaveTheDatabaseAlone) {
  const auto db = service_config().mariadb.primary;
  // The sample rows (other tests add and change their own rows in parallel).
  const std::string checksum_sql =
      "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', name, customer_name, modified))) FROM `tabCustomer` WHERE name LIKE 'CUST-%';"
      "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', name, customer, status, modified))) FROM `tabService Order` "
      "WHERE name <= 'SO-2026-02000';"
      "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', name, customer, modified))) FROM `tabVehicle` WHERE name LIKE 'VEH-%';";
  const std::string before = mariadb_sql(db, checksum_sql);
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  struct Case {
    std::string target;
    int status;
  };
  const std::string big(5000, 'x');
  const Case cases[] = {
      {"/api/method/universal_workshop.api.get_customer_summary?customer=x%27%3B%20DROP%20TABLE%20tabCustomer%3B--", 404},
      {"/api/method/universal_workshop.api.get_customer_summary?customer=" + big, 417},
      {"/api/method/universal_workshop.api.get_customer_summary", 417},
      {"/api/method/universal_workshop.api.get_workshop_schedule?date=2026-01-01%27%20OR%20%271%27%3D%271", 417},
      {"/api/resource/Customer?filters=%5B%5B%22name%22%2C%22%3D%22%2C%22x%27%20OR%201%3D1%20--%22%5D%5D", 200},
      {"/api/resource/Customer?filters=%7Bnot%20json", 417},
      {"/api/resource/Customer?filters=%5B%5B%22name%3B%20DROP%20TABLE%20tabCustomer%22%2C%22%3D%22%2C%22x%22%5D%5D", 417},
      {"/api/resource/Customer?fields=%5B%22(select%20password%20from%20__Auth)%22%5D", 417},
      {"/api/resource/Customer?order_by=name%3B%20DELETE%20FROM%20tabCustomer", 417},
      {"/api/resource/Customer?fields=%5B%22name%22%5D&filters=%5B%5B%22name%22%2C%22sleep%22%2C%22x%22%5D%5D", 417},
      {"/api/resource/Customer?limit_page_length=-1", 417},
      {"/api/resource/Customer?limit_page_length=abc", 417},
      {"/api/resource/Customer/CUST-00001%00", 400},
      {"/api/resource/Customer?group_by=name%2C(select%201)", 417},
      {"/api/resource/tabUser", 404},
      {"/api/resource/..%2F..%2Fetc%2Fpasswd", 404},
  };
  for (const auto& c : cases) {
    auto r = get(p.port(), c.target, {alice_.token_header()});
    EXPECT_EQ(r.status, c.status) << c.target << ": " << r.body;
    if (r.status >= 400) {
      EXPECT_TRUE(has(r.body, "\"exc_type\"")) << c.target << ": " << r.body;
    } else {
      EXPECT_EQ(r.body, "{\"data\":[]}") << c.target;  // the quote is data, not SQL
    }
  }
  EXPECT_EQ(mariadb_sql(db, checksum_sql), before);
}

TEST(ReadPathPrivate, ColdKeyIsFetchedOnceHoweverManyAsk) {
  MariaDbServer db;
  db.load_schema();
  db.sql("INSERT INTO `tabCustomer` (name, customer_name) VALUES ('CUST-00001', 'Only Customer');\n"
         "SET GLOBAL general_log_file = 'general.log'; SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1;");
  ApiUser user(db.settings(), "collapse@example.com");
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_MARIADB_PRIMARY", db.url()}});
  // Identify first (once per worker), so that only the named query is left to count.
  for (int i = 0; i < 8; ++i) get(p.port(), "/api/method/universal_workshop.api.get_service_catalog", {user.token_header()});
  db.sql("TRUNCATE mysql.general_log;");

  std::vector<std::future<RawClient::Response>> answers;
  std::promise<void> go;
  auto start = go.get_future().share();
  for (int i = 0; i < 100; ++i)
    answers.push_back(std::async(std::launch::async, [&, start] {
      RawClient c(p.port());
      start.wait();
      c.send("GET " + kSummary + " HTTP/1.1\r\nHost: x\r\n" + user.token_header() + "\r\n\r\n");
      auto r = c.read_response(20s);
      return r ? *r : RawClient::Response{};
    }));
  go.set_value();
  std::set<std::string> bodies;
  std::map<std::string, int> statuses;
  for (auto& a : answers) {
    auto r = a.get();
    EXPECT_EQ(r.status, 200) << r.body;
    bodies.insert(r.body);
    ++statuses[cache_status(r)];
  }
  EXPECT_EQ(bodies.size(), 1u);
  const std::string executed = db.sql(
      "SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Execute' AND argument LIKE '%FROM `tabVehicle`%';");
  EXPECT_EQ(std::stoi(executed), 1) << "the vehicles statement of customer_summary ran " << executed << " times";
  EXPECT_EQ(statuses["pitstop; fwd=uri-miss; stored"], 1);
  int collapsed = 0;
  for (const auto& [status, n] : statuses)
    if (has(status, "collapsed")) collapsed += n;
  EXPECT_GT(collapsed, 0);
  std::string summary;
  for (const auto& [status, n] : statuses) summary += status + " x" + std::to_string(n) + "\n";
  RecordProperty("cache_status", summary);
}

TEST(ReadPathPrivate, StaleAnswersWhileRevalidatingAndWhenTheOriginFails) {
  MariaDbServer db;
  db.load_schema();
  db.sql("INSERT INTO `tabTechnician` (name, technician_name) VALUES ('TECH-1', 'Ana');\n");
  ApiUser user(db.settings(), "stale@example.com");
  // One worker: identities are remembered per worker, and a worker that never saw this user
  // could not verify it once the database is gone.
  Pitstop p({{"PITSTOP_SITE", unique_site()},
             {"PITSTOP_WORKERS", "1"},
             {"PITSTOP_MARIADB_PRIMARY", db.url()},
             {"PITSTOP_MARIADB_CONNECT_TIMEOUT_MS", "300"},
             {"PITSTOP_CACHE_CATEGORIES_TECHNICIAN_SKILLS_TTL_S", "1"},
             {"PITSTOP_CACHE_CATEGORIES_TECHNICIAN_SKILLS_STALE_WHILE_REVALIDATE_S", "2"},
             {"PITSTOP_CACHE_CATEGORIES_TECHNICIAN_SKILLS_STALE_IF_ERROR_S", "60"}});
  const std::string skills = "/api/method/universal_workshop.api.get_technician_skills?technician=TECH-1";
  auto first = get(p.port(), skills, {user.token_header()});
  ASSERT_EQ(first.status, 200) << first.body;
  // Within the stale-while-revalidate window: the old answer at once, a refresh behind it. (The
  // change goes around the triggers, or its invalidation would drop the answer outright.)
  db.sql("SET @pitstop_write = 1; UPDATE `tabTechnician` SET technician_name = 'Ana Maria' WHERE name = 'TECH-1';");
  std::this_thread::sleep_for(1200ms);
  auto stale = get(p.port(), skills, {user.token_header()});
  EXPECT_TRUE(has(cache_status(stale), "detail=stale-while-revalidate")) << cache_status(stale);
  EXPECT_TRUE(has(stale.body, "\"Ana\"")) << stale.body;
  std::this_thread::sleep_for(300ms);
  auto refreshed = get(p.port(), skills, {user.token_header()});
  EXPECT_TRUE(has(cache_status(refreshed), "hit")) << cache_status(refreshed);
  EXPECT_TRUE(has(refreshed.body, "Ana Maria")) << refreshed.body;

  // Past the revalidation window with the database gone: the stale answer stands in.
  std::this_thread::sleep_for(3200ms);
  db.stop();
  auto covered = get(p.port(), skills, {user.token_header()});
  EXPECT_EQ(covered.status, 200) << covered.body;
  EXPECT_TRUE(has(cache_status(covered), "detail=stale-if-error")) << cache_status(covered);
  EXPECT_TRUE(has(covered.body, "Ana Maria"));
  // Without anything stale to offer, the failure is the answer.
  auto uncovered = get(p.port(), "/api/method/universal_workshop.api.get_technician_skills?technician=TECH-2", {user.token_header()});
  EXPECT_GE(uncovered.status, 500);
  EXPECT_TRUE(has(uncovered.body, "\"exc_type\"")) << uncovered.body;
}

TEST_F(ReadPath, CacheOffAnswersEveryReadFromTheDatabase) {
  const auto db = service_config().mariadb.primary;
  const std::string c = "RP-OFF-" + std::to_string(::getpid());
  mariadb_sql(db, "DELETE FROM `tabCustomer` WHERE name = '" + c + "'; INSERT INTO `tabCustomer` (name, customer_name) VALUES ('" + c +
                      "', 'Before');");
  const std::string target = "/api/method/universal_workshop.api.get_customer_summary?customer=" + c;
  {
    Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_CACHE_ENABLED", "false"}});
    for (int i = 0; i < 2; ++i) {
      auto r = get(p.port(), target, {alice_.token_header()});
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(cache_status(r), "pitstop; fwd=bypass; detail=cache-off");
      EXPECT_EQ(json_field(r.body, {"message", "customer", "customer_name"}), "Before");
    }
    // Around pitstop and without waiting for any invalidation: the next read already sees it.
    mariadb_sql(db, "UPDATE `tabCustomer` SET customer_name = 'After' WHERE name = '" + c + "'");
    auto after = get(p.port(), target, {alice_.token_header()});
    EXPECT_EQ(json_field(after.body, {"message", "customer", "customer_name"}), "After");
    EXPECT_EQ(cache_status(after), "pitstop; fwd=bypass; detail=cache-off");
    // Errors are answered the same way, not cached either.
    auto missing = get(p.port(), "/api/method/universal_workshop.api.get_customer_summary?customer=RP-OFF-NONE", {alice_.token_header()});
    EXPECT_EQ(missing.status, 404) << missing.body;
  }
  mariadb_sql(db, "DELETE FROM `tabCustomer` WHERE name = '" + c + "'");
}

// A front proxy and the ERP behind it must never pick different credentials from one request.
TEST_F(ReadPath, RepeatedCredentialsAreRefused) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  const std::string doc = "/api/resource/Customer/CUST-00003";
  auto two_headers = get(p.port(), doc, {alice_.token_header(), bob_.token_header()});
  EXPECT_EQ(two_headers.status, 400) << two_headers.body;
  EXPECT_TRUE(has(two_headers.body, "InvalidAuthorizationHeader")) << two_headers.body;
  auto same_twice = get(p.port(), doc, {alice_.token_header(), alice_.token_header()});
  EXPECT_EQ(same_twice.status, 400);
  for (std::vector<std::string> cookies : {std::vector<std::string>{"Cookie: sid=aaa; sid=bbb"},
                                           std::vector<std::string>{"Cookie: sid=aaa", "Cookie: sid=bbb"}}) {
    cookies.push_back(alice_.token_header());
    auto r = get(p.port(), doc, cookies);
    EXPECT_EQ(r.status, 400) << cookies.front() << ": " << r.body;
  }
  // Still one credential each: served.
  EXPECT_EQ(get(p.port(), doc, {alice_.token_header(), "Cookie: theme=dark; sid=Guest"}).status, 200);
}

// Anonymous requests learn nothing but 401, whatever their parameters; every refusal still
// tells the client its budget.
TEST_F(ReadPath, AnonymousRequestsLearnNothingButTheirBudget) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  for (const std::string& target : {std::string("/api/method/universal_workshop.api.get_customer_summary"),
                                   std::string("/api/resource/Customer?limit_page_length=abc"),
                                   std::string("/api/resource/Customer?filters=%7Bnot%20json"), std::string(kSummary)}) {
    auto r = get(p.port(), target, {});
    EXPECT_EQ(r.status, 401) << target << ": " << r.body;
    EXPECT_FALSE(r.headers["ratelimit"].empty()) << target;
    EXPECT_FALSE(r.headers["ratelimit-policy"].empty()) << target;
  }
  // 403, 404 (no route, no document) and 417 answers to a user carry the fields too.
  ApiUser clerk(service_config().mariadb.primary, "readpath-clerk-" + std::to_string(::getpid()) + "@example.com", {"All"});
  const std::pair<std::string, int> cases[] = {{"/api/resource/NoSuchDoctype", 404},
                                               {"/api/resource/Customer/NO-SUCH-CUSTOMER", 404},
                                               {"/api/resource/Customer?limit_page_length=abc", 417}};
  for (const auto& [target, status] : cases) {
    auto r = get(p.port(), target, {clerk.token_header()});
    EXPECT_EQ(r.status, status) << target << ": " << r.body;
    EXPECT_FALSE(r.headers["ratelimit"].empty()) << target;
  }
  auto denied = http_request(p.port(), "DELETE", "/api/resource/Customer/CUST-00001", {clerk.token_header()});
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403) << denied->body;
  EXPECT_FALSE(denied->headers["ratelimit"].empty());
}

// A CDN or a corporate proxy in front must never hand one user's answer to another.
TEST_F(ReadPath, AnswersAreMarkedPrivateAndVaryOnCredentials) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  for (const std::string& target : {std::string("/api/resource/Customer/CUST-00003"), std::string(kSummary)}) {
    for (int i = 0; i < 2; ++i) {  // the miss and the hit
      auto r = get(p.port(), target, {alice_.token_header()});
      ASSERT_EQ(r.status, 200);
      EXPECT_EQ(r.headers["cache-control"], "private, no-cache") << target;
      EXPECT_EQ(r.headers["vary"], "Cookie, Authorization") << target;
      auto revalidated = get(p.port(), target, {alice_.token_header(), "If-None-Match: " + r.headers["etag"]});
      EXPECT_EQ(revalidated.status, 304);
      EXPECT_EQ(revalidated.headers["cache-control"], "private, no-cache");
      EXPECT_EQ(revalidated.headers["vary"], "Cookie, Authorization");
    }
  }
  EXPECT_EQ(get(p.port(), "/api/resource/Customer/NOPE", {alice_.token_header()}).headers["cache-control"], "private, no-cache");
}

// Each unknown credential costs a database lookup: a client guessing keys is stopped.
TEST_F(ReadPath, FailedAuthenticationsAreRateLimited) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_AUTH_FAILURE_LIMIT", "3"}});
  int refused = 0, unauthorized = 0;
  for (int i = 0; i < 12; ++i) {
    auto r = get(p.port(), kSummary, {"Authorization: token guess" + std::to_string(i) + ":secret"});
    if (r.status == 401) ++unauthorized;
    if (r.status == 429) {
      ++refused;
      EXPECT_TRUE(has(r.body, "TooManyRequestsError")) << r.body;
      EXPECT_TRUE(has(r.headers["ratelimit-policy"], "\"auth_failures\";q=3")) << r.headers["ratelimit-policy"];
      EXPECT_FALSE(r.headers["retry-after"].empty());
    }
  }
  // Two workers count together (one budget per instance): at most limit + burst + 1 lookups.
  EXPECT_LE(unauthorized, 4);
  EXPECT_GE(refused, 8);
  // While the address's budget is spent, a key not verified before is refused from it too.
  auto fresh = get(p.port(), kSummary, {alice_.token_header()});
  EXPECT_EQ(fresh.status, 429);
}
