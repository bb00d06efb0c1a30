// The ERP's own permissions enforced end to end (issue 13): the pitstop binary against the real
// MariaDB, whose permission tables hold the sample site's rows (sql/permissions.sql). Each test
// restricts users of its own (user permissions and shares are per user), so that tests running
// in parallel never see each other's rows.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using namespace pitstop::test;

namespace {

std::string q(const std::string& sql) {
  auto out = mariadb_sql(service_config().mariadb.primary, sql);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::set<std::string> lines(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.insert(l);
  return out;
}

std::string sql_list(const std::set<std::string>& values) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "'" : ",'") + v + "'";
  return out.empty() ? "''" : out;
}

RawClient::Response call(std::uint16_t port, const std::string& method, const std::string& target, const std::string& auth,
                         const std::string& body = {}) {
  auto r = http_request(port, method, target, {auth, "Content-Type: application/json"}, 20s, body);
  if (!r) throw std::runtime_error("no answer to " + method + " " + target);
  return *r;
}

// The `key` of every row of a list answer ({"data": [{...}, ...]}); throws on anything else.
std::set<std::string> column(const std::string& body, const char* key = "name") {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) throw std::runtime_error("not JSON: " + body.substr(0, 200));
  simdjson::dom::array rows;
  if (doc["data"].get_array().get(rows)) throw std::runtime_error("no data list: " + body.substr(0, 200));
  std::set<std::string> out;
  for (auto row : rows) {
    simdjson::dom::element v;
    if (row[key].get(v)) continue;
    if (v.is_string()) out.emplace(std::string_view(v.get_string().value_unsafe()));
    else out.insert(simdjson::to_string(v));
  }
  return out;
}

std::size_t rows_of(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array rows;
  if (parser.parse(body).get(doc) || doc["data"].get_array().get(rows)) throw std::runtime_error("not a list: " + body.substr(0, 200));
  return rows.size();
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }


// Rows a test adds to the permission tables, named after it and removed when it ends.
class Grants {
 public:
  explicit Grants(std::string tag) : tag_(std::move(tag)) {}
  ~Grants() {
    q("DELETE FROM `tabUser Permission` WHERE name LIKE '" + tag_ + "-%'; DELETE FROM `tabDocShare` WHERE name LIKE '" + tag_ + "-%'");
  }
  void restrict(const std::string& user, const std::string& allow, const std::string& value, const std::string& applicable_for = {}) {
    q("INSERT INTO `tabUser Permission` (name, user, allow, for_value, applicable_for) VALUES ('" + tag_ + "-" + std::to_string(n_++) +
      "', '" + user + "', '" + allow + "', '" + value + "', " + (applicable_for.empty() ? "NULL" : "'" + applicable_for + "'") + ")");
  }
  void share(const std::string& user, const std::string& doctype, const std::string& name, bool write = false) {
    q("INSERT INTO `tabDocShare` (name, user, share_doctype, share_name, `read`, `write`) VALUES ('" + tag_ + "-" + std::to_string(n_++) +
      "', '" + user + "', '" + doctype + "', '" + name + "', 1, " + (write ? "1" : "0") + ")");
  }

 private:
  std::string tag_;
  int n_ = 0;
};

std::string unique(const std::string& what) {
  static int n = 0;
  return "perm-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

const std::string kAll = "limit_page_length=0";

}  // namespace

TEST(ErpPermissions, ARestrictedUserSeesOnlyTheirCustomersInDocumentsListsCountsAndGroups) {
  const auto db = service_config().mariadb.primary;
  ApiUser r(db, unique("restricted") + "@example.com", {"Service Advisor"});
  ApiUser free_user(db, unique("free") + "@example.com", {"Service Advisor"});
  Grants g(unique("g1"));
  const std::set<std::string> mine = {"CUST-00001", "CUST-00002", "CUST-00003"};
  for (const auto& c : mine) g.restrict(r.name(), "Customer", c);
  const std::string shared = q("SELECT name FROM `tabService Order` WHERE customer NOT IN (" + sql_list(mine) + ") ORDER BY name LIMIT 1");
  ASSERT_FALSE(shared.empty());
  g.share(r.name(), "Service Order", shared);
  Pitstop p({{"PITSTOP_SITE", unique("site")}});

  EXPECT_EQ(call(p.port(), "GET", "/api/resource/Customer/CUST-00002", r.token_header()).status, 200);
  auto foreign = call(p.port(), "GET", "/api/resource/Customer/CUST-00007", r.token_header());
  EXPECT_EQ(foreign.status, 403) << foreign.body;
  EXPECT_EQ(json_field(foreign.body, {"exc_type"}), "PermissionError");
  EXPECT_EQ(call(p.port(), "GET", "/api/resource/Customer/CUST-99999", r.token_header()).status, 404) << "the doctype is readable";
  EXPECT_EQ(call(p.port(), "GET", "/api/resource/Customer/CUST-00007", free_user.token_header()).status, 200);

  EXPECT_EQ(column(call(p.port(), "GET", "/api/resource/Customer?" + kAll, r.token_header()).body), mine);
  const auto vehicles = lines(q("SELECT name FROM `tabVehicle` WHERE IFNULL(customer, '') = '' OR customer IN (" + sql_list(mine) + ")"));
  EXPECT_EQ(column(call(p.port(), "GET", "/api/resource/Vehicle?" + kAll, r.token_header()).body), vehicles);
  auto orders = lines(q("SELECT name FROM `tabService Order` WHERE IFNULL(customer, '') = '' OR customer IN (" + sql_list(mine) + ")"));
  orders.insert(shared);
  EXPECT_EQ(column(call(p.port(), "GET", "/api/resource/Service%20Order?" + kAll, r.token_header()).body), orders)
      << "their customers' orders and the one shared with them";
  // The document shared with them opens too, though its customer is not theirs.
  EXPECT_EQ(call(p.port(), "GET", "/api/resource/Service%20Order/" + shared, r.token_header()).status, 200);

  // A method whose answer shows customers beyond theirs is refused to them, not to others.
  const std::string summary = "/api/method/universal_workshop.api.get_customer_summary?customer=CUST-00007";
  auto method = call(p.port(), "GET", summary, r.token_header());
  EXPECT_EQ(method.status, 403) << method.body;
  EXPECT_FALSE(has(method.body, "CUST-00007\"")) << method.body;
  EXPECT_EQ(call(p.port(), "GET", summary, free_user.token_header()).status, 200);
  EXPECT_EQ(call(p.port(), "GET", summary, r.token_header()).status, 403) << "after the entry exists too";

  // Counts and groups see the same rows.
  const std::string count = "/api/resource/Service%20Order?fields=" + url_encode(R"(["count(name) as n"])");
  EXPECT_EQ(column(call(p.port(), "GET", count, r.token_header()).body, "n"), std::set<std::string>{std::to_string(orders.size())});
  EXPECT_EQ(column(call(p.port(), "GET", count, free_user.token_header()).body, "n"),
            std::set<std::string>{q("SELECT COUNT(*) FROM `tabService Order`")});
  const std::string groups = "/api/resource/Service%20Order?" + kAll + "&group_by=customer&fields=" + url_encode(R"(["customer","count(name) as n"])");
  auto grouped = column(call(p.port(), "GET", groups, r.token_header()).body, "customer");
  auto expected_groups = mine;
  expected_groups.insert(q("SELECT customer FROM `tabService Order` WHERE name = '" + shared + "'"));
  for (const auto& c : grouped) EXPECT_TRUE(expected_groups.count(c)) << c << " appears in the restricted user's groups";
}

TEST(ErpPermissions, FieldsAboveTheUsersLevelNeverAppear) {
  const auto db = service_config().mariadb.primary;
  ApiUser low(db, unique("low") + "@example.com");  // All only: level 0
  ApiUser advisor(db, unique("advisor") + "@example.com", {"Service Advisor"});  // reads level 1
  Pitstop p({{"PITSTOP_SITE", unique("site")}});
  const auto doc_low = call(p.port(), "GET", "/api/resource/Customer/CUST-00008", low.token_header());
  ASSERT_EQ(doc_low.status, 200);
  EXPECT_FALSE(has(doc_low.body, "credit_limit")) << doc_low.body;
  EXPECT_TRUE(has(doc_low.body, "customer_name"));
  const auto doc_adv = call(p.port(), "GET", "/api/resource/Customer/CUST-00008", advisor.token_header());
  EXPECT_TRUE(has(doc_adv.body, "\"credit_limit\"")) << doc_adv.body;

  auto list = [&](const ApiUser& u, const std::string& fields, const std::string& more = {}) {
    return call(p.port(), "GET", "/api/resource/Customer?limit_page_length=5&fields=" + url_encode(fields) + more, u.token_header());
  };
  auto two = list(low, R"(["name","credit_limit"])");
  ASSERT_EQ(two.status, 200) << two.body;
  EXPECT_EQ(rows_of(two.body), 5u);
  EXPECT_FALSE(has(two.body, "credit_limit")) << "asked for, left out: " << two.body;
  auto only = list(low, R"(["credit_limit"])");
  ASSERT_EQ(only.status, 200) << only.body;
  EXPECT_EQ(only.body, R"({"data":[]})") << "every field asked for is hidden: no rows";
  EXPECT_EQ(list(low, R"(["sum(credit_limit) as s"])").body, R"({"data":[]})");
  EXPECT_FALSE(has(list(low, R"(["*"])").body, "credit_limit"));
  EXPECT_TRUE(has(list(advisor, R"(["name","credit_limit"])").body, "credit_limit"));
  // Filtering on a hidden field is allowed, as in Frappe; its values stay hidden.
  auto filtered = list(low, R"(["name"])", "&filters=" + url_encode(R"([["credit_limit", ">=", 25000]])"));
  ASSERT_EQ(filtered.status, 200) << filtered.body;
  EXPECT_EQ(column(filtered.body).size(), rows_of(filtered.body));
  for (const auto& n : column(filtered.body)) EXPECT_GE(std::stod(q("SELECT credit_limit FROM tabCustomer WHERE name = '" + n + "'")), 25000.0);
}

TEST(ErpPermissions, WritesTheErpWouldRefuseAreRefusedBeforeAnythingIsWritten) {
  const auto db = service_config().mariadb.primary;
  ApiUser manager(db, unique("manager") + "@example.com", {"Workshop Manager"});
  ApiUser r(db, unique("writer") + "@example.com", {"Service Advisor"});
  ApiUser low(db, unique("reader") + "@example.com");
  Pitstop p({{"PITSTOP_SITE", unique("site")}});
  auto create = [&](const ApiUser& u, const std::string& path, const std::string& body) {
    return call(p.port(), "POST", path, u.token_header(), body);
  };
  auto x = create(manager, "/api/resource/Customer", R"({"customer_name":"Perm Mine"})");
  auto y = create(manager, "/api/resource/Customer", R"({"customer_name":"Perm Foreign"})");
  ASSERT_EQ(x.status, 200) << x.body;
  ASSERT_EQ(y.status, 200) << y.body;
  const std::string xn = json_field(x.body, {"data", "name"}), yn = json_field(y.body, {"data", "name"});
  struct Cleanup {
    std::string sql;
    ~Cleanup() { q(sql); }
  } cleanup{"DELETE FROM tabVehicle WHERE customer IN ('" + xn + "','" + yn + "'); DELETE FROM tabCustomer WHERE name IN ('" + xn + "','" + yn + "')"};
  Grants g(unique("g3"));
  g.restrict(r.name(), "Customer", xn);
  // The restriction reaches the running pitstop through the outbox (milliseconds): until a read
  // shows it, a write could still be judged by the permissions before it.
  const auto since = std::chrono::steady_clock::now();
  while (call(p.port(), "GET", "/api/resource/Customer/" + yn, r.token_header()).status != 403) {
    ASSERT_LT(std::chrono::steady_clock::now() - since, 10s) << "the restriction never took effect";
    std::this_thread::sleep_for(5ms);
  }

  auto put = [&](const ApiUser& u, const std::string& path, const std::string& body) { return call(p.port(), "PUT", path, u.token_header(), body); };
  auto refused = put(r, "/api/resource/Customer/" + yn, R"({"territory":"Stolen"})");
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(q("SELECT IFNULL(territory, '') FROM tabCustomer WHERE name = '" + yn + "'"), "Stolen");
  EXPECT_EQ(put(r, "/api/resource/Customer/" + xn, R"({"territory":"North"})").status, 200);
  auto no_role = put(low, "/api/resource/Customer/" + xn, R"({"territory":"South"})");
  EXPECT_EQ(no_role.status, 403);
  EXPECT_TRUE(has(no_role.body, "Insufficient Permission for Customer (write)")) << no_role.body;

  // A vehicle for someone else's customer: refused, nothing inserted; for their own: made.
  const std::string before = q("SELECT COUNT(*) FROM tabVehicle WHERE customer = '" + yn + "'");
  EXPECT_EQ(create(r, "/api/resource/Vehicle", R"({"customer":")" + yn + R"(","license_plate":"PERM-1"})").status, 403);
  EXPECT_EQ(q("SELECT COUNT(*) FROM tabVehicle WHERE customer = '" + yn + "'"), before);
  auto v = create(r, "/api/resource/Vehicle", R"({"customer":")" + xn + R"(","license_plate":"PERM-2"})");
  ASSERT_EQ(v.status, 200) << v.body;
  const std::string vn = json_field(v.body, {"data", "name"});
  // Relinking it to someone else's customer would hand it over: refused, and it stays.
  EXPECT_EQ(put(r, "/api/resource/Vehicle/" + vn, R"({"customer":")" + yn + R"("})").status, 403);
  EXPECT_EQ(q("SELECT customer FROM tabVehicle WHERE name = '" + vn + "'"), xn);

  // credit_limit is at level 1: a Service Advisor reads it but may not change it; sending back
  // what was read is fine.
  auto changed = put(r, "/api/resource/Customer/" + xn, R"({"credit_limit": 99999})");
  EXPECT_EQ(changed.status, 403) << changed.body;
  EXPECT_EQ(std::stod(q("SELECT credit_limit FROM tabCustomer WHERE name = '" + xn + "'")), 0.0);
  EXPECT_EQ(put(r, "/api/resource/Customer/" + xn, R"({"credit_limit": 0, "mobile_no": "+1555000"})").status, 200);
  EXPECT_EQ(put(manager, "/api/resource/Customer/" + xn, R"({"credit_limit": 5000})").status, 200) << "a Workshop Manager writes level 1";
  // On insert (by an advisor restricted to nothing: a restricted one may only create what their
  // user permissions allow): the default (0) may be sent, another value may not.
  ApiUser advisor(db, unique("advisor") + "@example.com", {"Service Advisor"});
  auto with_default = create(advisor, "/api/resource/Customer", R"({"customer_name":"Perm Default","credit_limit":0})");
  EXPECT_EQ(with_default.status, 200) << with_default.body;
  q("DELETE FROM tabCustomer WHERE name = '" + json_field(with_default.body, {"data", "name"}) + "'");
  auto with_limit = create(advisor, "/api/resource/Customer", R"({"customer_name":"Perm Limit","credit_limit":100})");
  EXPECT_EQ(with_limit.status, 403) << with_limit.body;
  // A delete needs the delete right (Workshop Manager only).
  EXPECT_EQ(call(p.port(), "DELETE", "/api/resource/Vehicle/" + vn, r.token_header()).status, 403);
  EXPECT_EQ(q("SELECT COUNT(*) FROM tabVehicle WHERE name = '" + vn + "'"), "1");
}

TEST(ErpPermissions, AChangeInThePermissionTablesReachesEveryInstance) {
  const auto db = service_config().mariadb.primary;
  ApiUser u(db, unique("moved") + "@example.com", {"Service Advisor"});
  const std::string site = unique("site");
  Pitstop a({{"PITSTOP_SITE", site}});
  Pitstop b({{"PITSTOP_SITE", site}});
  const std::string doc = "/api/resource/Customer/CUST-00004";
  ASSERT_EQ(call(b.port(), "GET", doc, u.token_header()).status, 200);
  ASSERT_EQ(call(a.port(), "GET", doc, u.token_header()).status, 200);
  ASSERT_TRUE(has(cache_status(call(b.port(), "GET", doc, u.token_header())), "hit"));
  auto wait_for = [&](const Pitstop& p, int status) {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < 10s) {
      if (call(p.port(), "GET", doc, u.token_header()).status == status) return std::chrono::steady_clock::now() - start;
      std::this_thread::sleep_for(5ms);
    }
    return std::chrono::steady_clock::duration::max();
  };
  {
    // As the desk would: a user permission added in the ERP's own table.
    Grants g(unique("g4"));
    g.restrict(u.name(), "Customer", "CUST-00001");
    const auto on_b = wait_for(b, 403), on_a = wait_for(a, 403);
    ASSERT_NE(on_b, std::chrono::steady_clock::duration::max()) << "instance b still answers the old permissions";
    ASSERT_NE(on_a, std::chrono::steady_clock::duration::max()) << "instance a still answers the old permissions";
    std::printf("restriction seen after %lld ms (b), %lld ms (a)\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(on_b).count()),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(on_a).count()));
  }
  EXPECT_NE(wait_for(b, 200), std::chrono::steady_clock::duration::max()) << "the restriction's removal did not reach b";
}

// For random users, roles, user permissions and shares, the names a list returns through pitstop
// are those a query written straight from the permission tables returns, read twice (the second
// time from the cache), so that no answer crosses from one user's view to another's.
TEST(ErpPermissions, ListsEqualAReferenceQueryForRandomUsers) {
  const auto db = service_config().mariadb.primary;
  std::mt19937 rng(std::random_device{}());
  const std::vector<std::string> roles = {"Service Advisor", "Technician", "Workshop Manager"};
  Grants g(unique("g5"));
  std::vector<std::unique_ptr<ApiUser>> users;
  for (int i = 0; i < 10; ++i) {
    std::vector<std::string> mine;
    for (const auto& role : roles)
      if (rng() % 2) mine.push_back(role);
    users.push_back(std::make_unique<ApiUser>(db, unique("rand") + "@example.com", mine));
    const std::string& name = users.back()->name();
    // Two users of every pair share their restrictions, so that entries are shared too.
    const unsigned seed = (i / 2) * 7919u;
    std::mt19937 same(seed);
    const int restrictions = static_cast<int>(same() % 4);
    for (int k = 0; k < restrictions; ++k) {
      char c[16];
      std::snprintf(c, sizeof c, "CUST-%05u", static_cast<unsigned>(1 + same() % 40));
      const unsigned scope = same() % 3;
      g.restrict(name, "Customer", c, scope == 0 ? "" : scope == 1 ? "Service Order" : "Vehicle");
    }
    if (same() % 3 == 0) {
      char t[16];
      std::snprintf(t, sizeof t, "TECH-%04u", static_cast<unsigned>(1 + same() % 10));
      g.restrict(name, "Technician", t);
    }
    if (rng() % 2) g.share(name, "Service Order", q("SELECT name FROM `tabService Order` ORDER BY RAND() LIMIT 1"));
  }
  Pitstop p({{"PITSTOP_SITE", unique("site")}});
  for (const auto& u : users) {
    // The reference: for each Link field of the order, the user permissions on its target that
    // apply to orders (none: no condition), an empty link passing; OR the shared names.
    auto allowed = [&](const std::string& target) {
      return lines(q("SELECT for_value FROM `tabUser Permission` WHERE user = '" + u->name() + "' AND allow = '" + target +
                     "' AND IFNULL(applicable_for, '') IN ('', 'Service Order')"));
    };
    std::string where = "1 = 1";
    for (auto [field, target] : {std::pair{"customer", "Customer"}, std::pair{"vehicle", "Vehicle"},
                                 std::pair{"technician_assigned", "Technician"}, std::pair{"service_type", "Service Type"}}) {
      const auto values = allowed(target);
      if (!values.empty()) where += std::string(" AND (IFNULL(`") + field + "`, '') = '' OR `" + field + "` IN (" + sql_list(values) + "))";
    }
    const auto shared = lines(q("SELECT share_name FROM `tabDocShare` WHERE user = '" + u->name() + "' AND share_doctype = 'Service Order' AND `read` = 1"));
    std::string sql = "SELECT name FROM `tabService Order` WHERE (" + where + ")";
    if (!shared.empty() && where != "1 = 1") sql += " OR name IN (" + sql_list(shared) + ")";
    const auto expected = lines(q(sql));
    for (int round = 0; round < 2; ++round) {
      auto r = call(p.port(), "GET", "/api/resource/Service%20Order?" + kAll, u->token_header());
      ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
      EXPECT_EQ(column(r.body), expected) << u->name() << " round " << round << " (" << cache_status(r) << ")";
    }
  }
}

TEST(ErpPermissions, TheRulesFileDecidesWhenToldToAndEntriesArePerUserWhenNotShared) {
  const auto db = service_config().mariadb.primary;
  ApiUser r(db, unique("told") + "@example.com", {"Service Advisor"});
  ApiUser twin(db, unique("twin") + "@example.com", {"Service Advisor"});
  Grants g(unique("g6"));
  g.restrict(r.name(), "Customer", "CUST-00001");
  const std::string doc = "/api/resource/Customer/CUST-00009";
  {
    Pitstop rules_only({{"PITSTOP_SITE", unique("site")}, {"PITSTOP_AUTH_PERMISSIONS", "rules"}});
    EXPECT_EQ(call(rules_only.port(), "GET", doc, r.token_header()).status, 200) << "the rules file lets every user read";
  }
  Pitstop per_user({{"PITSTOP_SITE", unique("site")}, {"PITSTOP_CACHE_SHARE_BY_PERMISSION", "false"}});
  EXPECT_EQ(call(per_user.port(), "GET", doc, r.token_header()).status, 403) << "still enforced";
  ASSERT_EQ(call(per_user.port(), "GET", doc, twin.token_header()).status, 200);
  ApiUser third(db, unique("third") + "@example.com", {"Service Advisor"});
  auto other = call(per_user.port(), "GET", doc, third.token_header());
  EXPECT_TRUE(has(cache_status(other), "fwd=uri-miss")) << "one entry per user: " << cache_status(other);
  // A bad value is refused at start-up, naming the setting.
  Process check({(binary_dir() / "pitstop").string(), "--check-config", (source_dir() / "config/pitstop.json").string()},
                {{"PITSTOP_AUTH_PERMISSIONS", "everyone"}});
  EXPECT_EQ(check.wait(10s), std::optional<int>(2));
  EXPECT_TRUE(has(check.log(), "auth.permissions")) << check.log();
}

namespace {

// rules/workshop.json with one more doctype, served from a table the test makes.
std::string rules_with_probe() {
  return rules_copy("workshop.json", "probe-rules-" + std::to_string(::getpid()) + ".json", [](std::string& text) {
    const std::string anchor = "\"doctypes\": {";
    text.replace(text.find(anchor), anchor.size(),
                 anchor + "\n    \"Perm Probe\": { \"tags\": [], \"naming\": \"hash\", \"mandatory\": [\"title\"], \"links\": { \"customer\": \"Customer\" } },");
  });
}

}  // namespace

// What the sample site has no rows for, end to end on a doctype of the test's own: rights given
// only to owners (if_owner), a missing document of an unreadable doctype, and Custom DocPerm rows
// replacing the standard ones while pitstop runs.
TEST(ErpPermissions, OwnerOnlyRightsAndCustomRowsEndToEnd) {
  q("CREATE TABLE IF NOT EXISTS `tabPerm Probe` (`name` varchar(140) NOT NULL, `creation` datetime(6) DEFAULT NULL, "
    "`modified` datetime(6) DEFAULT NULL, `modified_by` varchar(140) DEFAULT NULL, `owner` varchar(140) DEFAULT NULL, "
    "`docstatus` int(1) NOT NULL DEFAULT 0, `idx` int(8) NOT NULL DEFAULT 0, `title` varchar(140) DEFAULT NULL, "
    "`customer` varchar(140) DEFAULT NULL, PRIMARY KEY (`name`), KEY `modified` (`modified`)) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci");
  const std::string tag = unique("probe");
  const std::string rows = "DELETE FROM `tabDocPerm` WHERE parent = 'Perm Probe'; DELETE FROM `tabCustom DocPerm` WHERE parent = 'Perm Probe';";
  q(rows + "INSERT INTO `tabDocPerm` (name, parent, parenttype, parentfield, idx, role, permlevel, if_owner, `read`, `write`, `create`) VALUES "
           "('" + tag + "-1', 'Perm Probe', 'DocType', 'permissions', 1, 'Perm Clerk', 0, 1, 1, 1, 1),"
           "('" + tag + "-2', 'Perm Probe', 'DocType', 'permissions', 2, 'Perm Auditor', 0, 0, 1, 0, 0)");
  struct Cleanup {
    std::string sql;
    ~Cleanup() { q(sql); }
  } cleanup{rows + "DELETE FROM `tabPerm Probe`"};
  const auto db = service_config().mariadb.primary;
  ApiUser clerk1(db, unique("clerk1") + "@example.com", {"Perm Clerk"});
  ApiUser clerk2(db, unique("clerk2") + "@example.com", {"Perm Clerk"});
  ApiUser auditor(db, unique("auditor") + "@example.com", {"Perm Auditor"});
  ApiUser nobody(db, unique("nobody") + "@example.com");
  Pitstop p({{"PITSTOP_SITE", unique("site")}, {"PITSTOP_RULES", rules_with_probe()}});
  const std::string base = "/api/resource/Perm%20Probe";
  auto made1 = call(p.port(), "POST", base, clerk1.token_header(), R"({"title":"one"})");
  auto made2 = call(p.port(), "POST", base, clerk2.token_header(), R"({"title":"two"})");
  ASSERT_EQ(made1.status, 200) << "create is never owner-only: " << made1.body;
  ASSERT_EQ(made2.status, 200) << made2.body;
  const std::string n1 = json_field(made1.body, {"data", "name"}), n2 = json_field(made2.body, {"data", "name"});

  // Owner-only: their own documents, read, listed and written; not the other's.
  EXPECT_EQ(call(p.port(), "GET", base + "/" + n1, clerk1.token_header()).status, 200);
  EXPECT_EQ(call(p.port(), "GET", base + "/" + n2, clerk1.token_header()).status, 403);
  EXPECT_EQ(column(call(p.port(), "GET", base + "?" + kAll, clerk1.token_header()).body), std::set<std::string>{n1});
  EXPECT_EQ(call(p.port(), "PUT", base + "/" + n1, clerk1.token_header(), R"({"title":"one, again"})").status, 200);
  EXPECT_EQ(call(p.port(), "PUT", base + "/" + n2, clerk1.token_header(), R"({"title":"taken"})").status, 403);
  EXPECT_EQ(q("SELECT title FROM `tabPerm Probe` WHERE name = '" + n2 + "'"), "two");
  // Read outright, no write.
  EXPECT_EQ(column(call(p.port(), "GET", base + "?" + kAll, auditor.token_header()).body), (std::set<std::string>{n1, n2}));
  EXPECT_EQ(call(p.port(), "PUT", base + "/" + n1, auditor.token_header(), R"({"title":"audited"})").status, 403);
  // No read at all: every document is refused, a missing one too (a 404 would tell what exists).
  EXPECT_EQ(call(p.port(), "GET", base + "/" + n1, nobody.token_header()).status, 403);
  EXPECT_EQ(call(p.port(), "GET", base + "/no-such-probe", nobody.token_header()).status, 403);
  auto refused_list = call(p.port(), "GET", base, nobody.token_header());
  EXPECT_EQ(refused_list.status, 403);
  EXPECT_TRUE(has(refused_list.body, "No permission for Perm Probe")) << refused_list.body;

  // Custom DocPerm rows replace the standard ones: everyone reads, nobody writes.
  q("INSERT INTO `tabCustom DocPerm` (name, parent, idx, role, permlevel, `read`, `write`) VALUES ('" + tag +
    "-c1', 'Perm Probe', 1, 'All', 0, 1, 0)");
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (std::chrono::steady_clock::now() - start < 10s &&
         (status = call(p.port(), "GET", base + "/" + n1, nobody.token_header()).status) != 200)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(status, 200) << "the custom rows did not take effect";
  EXPECT_EQ(call(p.port(), "GET", base + "/" + n2, clerk1.token_header()).status, 200);
  EXPECT_EQ(call(p.port(), "PUT", base + "/" + n1, clerk1.token_header(), R"({"title":"no longer"})").status, 403)
      << "the standard rows (owner-only write) no longer count";
}
