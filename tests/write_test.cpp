// Writes through pitstop and the invalidation that follows every write, end to end.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <ctime>
#include <fstream>
#include <sstream>
#include <functional>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using namespace pitstop::test;

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string unique_site() {
  static int n = 0;
  return "writetest-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

std::string year() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return std::to_string(tm.tm_year + 1900);
}

RawClient::Response call(std::uint16_t port, const std::string& method, const std::string& target, const std::string& auth,
                         const std::string& body = {}) {
  auto r = http_request(port, method, target, {auth, "Content-Type: application/json"}, 20s, body);
  if (!r) throw std::runtime_error("no answer to " + method + " " + target);
  return *r;
}

// The service database, as the tests see it.
std::string q(const std::string& sql) {
  auto out = mariadb_sql(service_config().mariadb.primary, sql);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

const std::string kOrders = "/api/resource/Service%20Order";

class Writes : public ::testing::Test {
 protected:
  Writes()
      : user_(service_config().mariadb.primary, "writes-" + std::to_string(::getpid()) + "@example.com",
              {"Workshop Manager", "All"}) {}
  std::string auth() const { return user_.token_header(); }

  // A fresh customer with a vehicle, made around pitstop, so that tests don't share documents.
  std::pair<std::string, std::string> customer_with_vehicle() {
    // The pid and a random run mark: rows of an earlier run (whose process had this pid) stay.
    static int n = 0;
    static const std::string run = std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}() % 100000);
    const std::string c = "WT-C-" + run + "-" + std::to_string(n);
    const std::string v = "WT-V-" + run + "-" + std::to_string(n++);
    q("INSERT INTO `tabCustomer` (name, customer_name) VALUES ('" + c + "', 'Writer " + c + "');"
      "INSERT INTO `tabVehicle` (name, license_plate, customer) VALUES ('" + v + "', 'WT " + v + "', '" + c + "');");
    // The inserts went around pitstop: their invalidations reach running instances within a
    // relay interval (250 ms), and would drop answers a test caches right after.
    std::this_thread::sleep_for(750ms);
    return {c, v};
  }

  std::string order_body(const std::string& c, const std::string& v, const std::string& extra = "") {
    return R"({"customer":")" + c + R"(","vehicle":")" + v + R"(","service_date":"2026-06-01","status":"Scheduled",)" +
           R"("service_type":"Oil Change","estimated_cost":99.5)" + extra + "}";
  }

  ApiUser user_;
};

}  // namespace

TEST_F(Writes, PostPutDeleteAsFrappeAnswersThem) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  auto created = call(p.port(), "POST", kOrders, auth(),
                      order_body(c, v, R"(,"items":[{"item_code":"ITEM-00001","qty":2,"rate":10.5},{"item_code":"ITEM-00002","qty":1,"rate":3}])"));
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string name = json_field(created.body, {"data", "name"});
  EXPECT_EQ(name.rfind("SO-" + year() + "-", 0), 0u) << name;
  EXPECT_EQ(json_field(created.body, {"data", "doctype"}), "Service Order");
  EXPECT_EQ(json_field(created.body, {"data", "owner"}), user_.name());
  EXPECT_EQ(json_field(created.body, {"data", "modified_by"}), user_.name());
  EXPECT_EQ(json_field(created.body, {"data", "estimated_cost"}), "99.5");
  EXPECT_TRUE(has(created.body, "\"items\":[{")) << created.body;
  EXPECT_TRUE(has(created.body, "\"parent\":\"" + name + "\"")) << created.body;
  EXPECT_EQ(q("SELECT COUNT(*) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "2");
  EXPECT_EQ(cache_status(created), "pitstop; fwd=method");

  // PUT is partial: what it names changes, the rest stays, modified moves.
  auto updated = call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"status":"In Progress"})");
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(json_field(updated.body, {"data", "status"}), "In Progress");
  EXPECT_EQ(json_field(updated.body, {"data", "estimated_cost"}), "99.5");
  EXPECT_NE(json_field(updated.body, {"data", "modified"}), json_field(created.body, {"data", "modified"}));
  EXPECT_EQ(json_field(updated.body, {"data", "creation"}), json_field(created.body, {"data", "creation"}));
  EXPECT_EQ(q("SELECT COUNT(*) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "2");
  // Naming a child table replaces its rows.
  auto items = call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"items":[{"item_code":"ITEM-00003","qty":5,"rate":1}]})");
  ASSERT_EQ(items.status, 200) << items.body;
  EXPECT_EQ(q("SELECT GROUP_CONCAT(item_code) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "ITEM-00003");

  auto read = call(p.port(), "GET", kOrders + "/" + name, auth());
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(json_field(read.body, {"data", "status"}), "In Progress");

  auto deleted = call(p.port(), "DELETE", kOrders + "/" + name, auth());
  EXPECT_EQ(deleted.status, 202);
  EXPECT_EQ(deleted.body, "{\"data\":\"ok\"}");
  EXPECT_EQ(call(p.port(), "GET", kOrders + "/" + name, auth()).status, 404);
  EXPECT_EQ(q("SELECT COUNT(*) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "0");
  EXPECT_EQ(call(p.port(), "DELETE", kOrders + "/" + name, auth()).status, 404);
  EXPECT_EQ(call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"status":"Completed"})").status, 404);
}

TEST_F(Writes, InvalidWritesAreRefusedAndWriteNothing) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_LIMITS_MAX_BODY_BYTES", "4096"}});
  auto [c, v] = customer_with_vehicle();
  // Other tests write at the same time: look only at what this customer could have gained.
  auto state = [&, c = c] {
    return q("SELECT COUNT(*) FROM `tabService Order` WHERE customer = '" + c + "'") + "/" +
           q("SELECT COUNT(*) FROM `tabService Order Item` i JOIN `tabService Order` o ON o.name = i.parent WHERE o.customer = '" + c + "'") +
           "/" + q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE tags LIKE '%customer:" + c + "\"%'");
  };
  const std::string before = state();
  struct Case {
    std::string body;
    unsigned status;
    std::string exc_type;
    std::string says;
  };
  const Case cases[] = {
      {order_body(c, v, R"(,"bogus":1)"), 417, "ValidationError", "Unknown field bogus"},
      {order_body(c, v, R"(,"estimated_cost":"lots")"), 417, "ValidationError", "estimated_cost"},
      {order_body(c, v, R"(,"docstatus":"x")"), 417, "ValidationError", "docstatus must be"},
      {order_body(c, v, R"(,"docstatus":2)"), 417, "DocstatusTransitionError", "from 0 (Draft) to 2 (Cancelled)"},
      {order_body(c, v, R"(,"docstatus":7)"), 417, "ValidationError", "Invalid docstatus"},
      {R"({"customer":")" + c + R"(","service_date":"2026-06-01"})", 417, "MandatoryError", "vehicle"},
      {order_body(c, v, R"(,"service_date":"2026-02-30")"), 417, "ValidationError", "date"},
      {order_body("NO-SUCH-CUSTOMER", v), 417, "LinkValidationError", "Could not find Customer: NO-SUCH-CUSTOMER"},
      {order_body(c, v, R"(,"items":[{"item_code":"NO-ITEM","qty":1}])"), 417, "LinkValidationError", "Item"},
      {order_body(c, v, R"(,"items":[{"qty":1}])"), 417, "MandatoryError", "item_code"},
      {order_body(c, v, R"(,"items":[{"item_code":"ITEM-00001","oops":1}])"), 417, "ValidationError", "oops"},
      {order_body(c, v, R"(,"items":"not a list")"), 417, "ValidationError", "items"},
      {order_body(c, v, R"(,"description":")" + std::string(200, 'x') + R"(","status":")" + std::string(200, 'y') + "\""), 417,
       "ValidationError", "longer than 140"},
      {"{not json", 417, "ValidationError", "not valid JSON"},
      {"[1,2,3]", 417, "ValidationError", "JSON object"},
      {"", 417, "ValidationError", "not valid JSON"},
      {R"({"doctype":"Customer"})", 417, "ValidationError", "doctype"},
      {order_body(c, v, R"(,"description":")" + std::string(5000, 'x') + "\""), 413, "RequestEntityTooLarge", "larger than"},
  };
  for (const auto& k : cases) {
    auto r = call(p.port(), "POST", kOrders, auth(), k.body);
    EXPECT_EQ(r.status, k.status) << k.body.substr(0, 200) << " -> " << r.body;
    EXPECT_EQ(json_field(r.body, {"exc_type"}), k.exc_type) << r.body;
    EXPECT_TRUE(has(r.body, k.says)) << k.says << " not in " << r.body;
  }
  EXPECT_EQ(state(), before) << "a refused write left something behind";
  // Nobody but a verified user writes.
  auto anon = http_request(p.port(), "POST", kOrders, {"Content-Type: application/json"}, 10s, order_body(c, v));
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->status, 401);
  EXPECT_EQ(state(), before);
}

// docstatus moves as Frappe lets it (check_docstatus_transition): draft → submitted → cancelled,
// each with its permission; a submitted document changes only in its allow_on_submit fields and
// is not deleted before it is cancelled.
TEST_F(Writes, DocstatusMovesOnlyAsFrappeAllows) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  ApiUser advisor(service_config().mariadb.primary, "writes-advisor-" + std::to_string(::getpid()) + "@example.com",
                  {"Service Advisor", "All"});
  auto [c, v] = customer_with_vehicle();
  auto docstatus_of = [&](const std::string& name) { return q("SELECT docstatus FROM `tabService Order` WHERE name = '" + name + "'"); };
  auto created = call(p.port(), "POST", kOrders, auth(), order_body(c, v, R"(,"items":[{"item_code":"ITEM-00001","qty":1,"rate":2}])"));
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string name = json_field(created.body, {"data", "name"});
  const std::string doc = kOrders + "/" + name;
  EXPECT_EQ(docstatus_of(name), "0");
  EXPECT_EQ(call(p.port(), "PUT", doc, auth(), R"({"docstatus":0,"status":"Draft"})").status, 200);

  // Submit: the order and its rows.
  auto submitted = call(p.port(), "PUT", doc, auth(), R"({"docstatus":1,"status":"Scheduled"})");
  ASSERT_EQ(submitted.status, 200) << submitted.body;
  EXPECT_EQ(docstatus_of(name), "1");
  EXPECT_EQ(q("SELECT GROUP_CONCAT(DISTINCT docstatus) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "1");
  // After submission: allow_on_submit fields only; the document sent back whole is fine.
  EXPECT_EQ(call(p.port(), "PUT", doc, auth(), R"({"status":"In Progress"})").status, 200);
  const auto fetched = call(p.port(), "GET", doc, auth());
  std::string whole = fetched.body.substr(8, fetched.body.size() - 9);  // {"data": … } → the document
  auto back = call(p.port(), "PUT", doc, auth(), whole);
  EXPECT_EQ(back.status, 200) << back.body;
  struct Refused {
    std::string body;
    unsigned status;
    std::string exc_type;
  };
  const Refused refused[] = {
      {R"({"estimated_cost":1})", 417, "UpdateAfterSubmitError"},
      {R"({"customer":"CUST-00001"})", 417, "UpdateAfterSubmitError"},
      {R"({"items":[{"item_code":"ITEM-00002","qty":1,"rate":2}]})", 417, "UpdateAfterSubmitError"},
      {R"({"items":[]})", 417, "UpdateAfterSubmitError"},
      {R"({"docstatus":0})", 417, "DocstatusTransitionError"},
      {R"({"docstatus":3})", 417, "ValidationError"},
      {R"({"docstatus":2,"estimated_cost":1})", 417, "UpdateAfterSubmitError"},
  };
  for (const auto& r : refused) {
    auto a = call(p.port(), "PUT", doc, auth(), r.body);
    EXPECT_EQ(a.status, r.status) << r.body << " -> " << a.body;
    EXPECT_EQ(json_field(a.body, {"exc_type"}), r.exc_type) << r.body << " -> " << a.body;
  }
  EXPECT_EQ(q("SELECT CONCAT(docstatus, '/', estimated_cost, '/', customer) FROM `tabService Order` WHERE name = '" + name + "'"),
            "1/99.500000000/" + c);
  EXPECT_EQ(q("SELECT GROUP_CONCAT(item_code) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "ITEM-00001");
  auto undeletable = call(p.port(), "DELETE", doc, auth());
  EXPECT_EQ(undeletable.status, 417) << undeletable.body;
  EXPECT_TRUE(has(undeletable.body, "Cancel it first")) << undeletable.body;
  // Cancelling needs the cancel permission: an advisor may submit but not cancel.
  auto not_yours = call(p.port(), "PUT", doc, advisor.token_header(), R"({"docstatus":2})");
  EXPECT_EQ(not_yours.status, 403) << not_yours.body;
  EXPECT_EQ(json_field(not_yours.body, {"exc_type"}), "PermissionError");
  EXPECT_EQ(call(p.port(), "PUT", doc, auth(), R"({"docstatus":2})").status, 200);
  EXPECT_EQ(docstatus_of(name), "2");
  EXPECT_EQ(q("SELECT GROUP_CONCAT(DISTINCT docstatus) FROM `tabService Order Item` WHERE parent = '" + name + "'"), "2");
  auto frozen = call(p.port(), "PUT", doc, auth(), R"({"status":"Completed"})");
  EXPECT_EQ(frozen.status, 417);
  EXPECT_TRUE(has(frozen.body, "Cannot edit cancelled document")) << frozen.body;
  EXPECT_EQ(call(p.port(), "DELETE", doc, auth()).status, 202);

  // Created submitted: with the submit permission only; never created cancelled.
  auto direct = call(p.port(), "POST", kOrders, advisor.token_header(), order_body(c, v, R"(,"docstatus":1)"));
  ASSERT_EQ(direct.status, 200) << direct.body;
  EXPECT_EQ(docstatus_of(json_field(direct.body, {"data", "name"})), "1");
  // A doctype that is not submittable has no submitted state.
  auto customer = call(p.port(), "PUT", "/api/resource/Customer/" + c, auth(), R"({"docstatus":1})");
  EXPECT_EQ(customer.status, 403) << customer.body;
  EXPECT_EQ(json_field(customer.body, {"exc_type"}), "PermissionError");
  EXPECT_EQ(q("SELECT docstatus FROM `tabCustomer` WHERE name = '" + c + "'"), "0");
  auto new_customer = call(p.port(), "POST", "/api/resource/Customer", auth(), R"({"customer_name":"Submitted?","docstatus":1})");
  EXPECT_EQ(new_customer.status, 403) << new_customer.body;
}

// A client's name counts only for doctypes named by prompt: nobody can squat the next number of
// a naming series; fields the server keeps are the server's.
TEST_F(Writes, NamesAndServerFieldsAreTheServers) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  const std::string next = "VEH-" + std::to_string(99000 + ::getpid() % 999);
  auto squat = call(p.port(), "POST", "/api/resource/Vehicle", auth(),
                    R"({"name":")" + next + R"(","customer":")" + c + R"(","license_plate":"SQ 1","owner":"mallory@example.com",)" +
                        R"("creation":"2000-01-01 00:00:00","modified_by":"mallory@example.com","idx":42,"docstatus":0})");
  ASSERT_EQ(squat.status, 200) << squat.body;
  const std::string made = json_field(squat.body, {"data", "name"});
  EXPECT_NE(made, next);
  EXPECT_EQ(made.rfind("VEH-", 0), 0u) << made;
  EXPECT_EQ(q("SELECT COUNT(*) FROM `tabVehicle` WHERE name = '" + next + "'"), "0");
  EXPECT_EQ(q("SELECT CONCAT(owner, '|', modified_by, '|', idx, '|', creation > '2001-01-01') FROM `tabVehicle` WHERE name = '" + made + "'"),
            user_.name() + "|" + user_.name() + "|0|1");
  // Field-named doctypes take the field.
  const std::string service = "WT-Service-" + std::to_string(::getpid());
  auto by_field = call(p.port(), "POST", "/api/resource/Service%20Type", auth(),
                       R"({"name":"squatted","service_name":")" + service + R"("})");
  ASSERT_EQ(by_field.status, 200) << by_field.body;
  EXPECT_EQ(json_field(by_field.body, {"data", "name"}), service);
  EXPECT_EQ(call(p.port(), "DELETE", "/api/resource/Service%20Type/" + service, auth()).status, 202);

  // An update may send back name, owner, creation and doctype unchanged (the Python client sends
  // the whole document), never changed.
  const auto fetched = call(p.port(), "GET", "/api/resource/Vehicle/" + made, auth());
  std::string whole = fetched.body.substr(8, fetched.body.size() - 9);
  EXPECT_EQ(call(p.port(), "PUT", "/api/resource/Vehicle/" + made, auth(), whole).status, 200);
  for (const std::string& change : {std::string(R"({"owner":"mallory@example.com"})"), std::string(R"({"creation":"2000-01-01 00:00:00"})"),
                                    std::string(R"({"name":"VEH-RENAMED"})"), std::string(R"({"doctype":"Customer"})")}) {
    auto r = call(p.port(), "PUT", "/api/resource/Vehicle/" + made, auth(), change);
    EXPECT_EQ(r.status, 417) << change << " -> " << r.body;
  }
  EXPECT_EQ(q("SELECT owner FROM `tabVehicle` WHERE name = '" + made + "'"), user_.name());
  // A link is stored as the linked document's name is stored, whatever case the client used.
  std::string lower = c;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  auto linked = call(p.port(), "PUT", "/api/resource/Vehicle/" + made, auth(), R"({"customer":")" + lower + R"( "})");
  ASSERT_EQ(linked.status, 200) << linked.body;
  EXPECT_EQ(q("SELECT customer FROM `tabVehicle` WHERE name = '" + made + "'"), c);
}

namespace {
// Spellings MariaDB's utf8mb4_unicode_ci takes for `name`: random case, trailing spaces,
// full-width forms (U+FF01..FF5E for ASCII '!'..'~').
std::string name_variant(const std::string& name, std::mt19937& rng) {
  std::string out;
  for (char ch : name) {
    const auto roll = rng() % 4;
    if (roll == 0 && ch > ' ' && ch <= '~') {
      const unsigned cp = 0xFF01 + static_cast<unsigned>(ch - '!');
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (roll == 1) {
      out += static_cast<char>(std::islower(static_cast<unsigned char>(ch)) ? std::toupper(static_cast<unsigned char>(ch))
                                                                             : std::tolower(static_cast<unsigned char>(ch)));
    } else {
      out += ch;
    }
  }
  out.append(rng() % 3, ' ');
  return out;
}

}  // namespace

// The database treats many spellings of a name as one row. Whatever spelling a client reads it
// by, no answer outlives a write of the row (through pitstop or around it), a deleted row is
// gone for every spelling, and one row occupies one entry per endpoint however it is spelled.
TEST_F(Writes, EverySpellingOfANameReadsFreshAfterAWrite) {
  const std::string site = unique_site();
  Pitstop p({{"PITSTOP_SITE", site}});
  auto [c, v] = customer_with_vehicle();
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  std::vector<std::string> cs{c}, vs{v};
  for (int i = 0; i < 10; ++i) {
    cs.push_back(name_variant(c, rng));
    vs.push_back(name_variant(v, rng));
  }
  const std::string summary = "/api/method/universal_workshop.api.get_customer_summary?customer=";
  const std::string history = "/api/method/universal_workshop.api.get_vehicle_history?vehicle=";
  // Every spelling answers the same row, and each read twice (a cached copy would show now).
  auto read_all = [&](const std::string& want_name, const std::string& want_plate) {
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& n : cs) {
        auto doc = call(p.port(), "GET", "/api/resource/Customer/" + url_encode(n), auth());
        ASSERT_EQ(doc.status, 200) << n << ": " << doc.body;
        EXPECT_EQ(json_field(doc.body, {"data", "name"}), c) << n;
        EXPECT_EQ(json_field(doc.body, {"data", "customer_name"}), want_name) << "stale for [" << n << "]: " << cache_status(doc);
        auto sum = call(p.port(), "GET", summary + url_encode(n), auth());
        ASSERT_EQ(sum.status, 200) << n << ": " << sum.body;
        EXPECT_EQ(json_field(sum.body, {"message", "customer", "customer_name"}), want_name) << "stale for [" << n << "]";
      }
      for (const auto& n : vs) {
        auto hist = call(p.port(), "GET", history + url_encode(n), auth());
        ASSERT_EQ(hist.status, 200) << n << ": " << hist.body;
        EXPECT_EQ(json_field(hist.body, {"message", "vehicle", "license_plate"}), want_plate) << "stale for [" << n << "]";
        EXPECT_EQ(json_field(hist.body, {"message", "vehicle", "customer_name"}), want_name) << "stale for [" << n << "]";
      }
    }
  };
  read_all("Writer " + c, "WT " + v);
  // Through pitstop, by a spelling of the name other than the stored one.
  auto w = call(p.port(), "PUT", "/api/resource/Customer/" + url_encode(cs[3]), auth(), R"({"customer_name":"Renamed Once"})");
  ASSERT_EQ(w.status, 200) << w.body;
  EXPECT_EQ(json_field(w.body, {"data", "name"}), c);
  auto wv = call(p.port(), "PUT", "/api/resource/Vehicle/" + url_encode(vs[4]), auth(), R"({"license_plate":"WT NEW"})");
  ASSERT_EQ(wv.status, 200) << wv.body;
  read_all("Renamed Once", "WT NEW");
  // Around pitstop: within the bypass bound (the binary log, or the relay's interval).
  // Once the stored spelling reads the change (the binary log or the relay brought it; how fast
  // is bench/staleness's business), every other spelling reads it too.
  auto until = [&](const std::function<bool()>& seen) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!seen() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  };
  q("UPDATE `tabCustomer` SET customer_name = 'Renamed Twice' WHERE name = '" + c + "'");
  until([&] { return json_field(call(p.port(), "GET", summary + url_encode(c), auth()).body, {"message", "customer", "customer_name"}) == "Renamed Twice"; });
  read_all("Renamed Twice", "WT NEW");
  // A link written around pitstop in another spelling: the history shows the customer, and a
  // write of the customer must still reach it. Its entry is refilled once the vehicle's own
  // invalidation has arrived (not a hit any more).
  q("UPDATE `tabVehicle` SET customer = '" + cs[1] + "' WHERE name = '" + v + "'");
  until([&] { return cache_status(call(p.port(), "GET", history + url_encode(v), auth())).find("hit") == std::string::npos; });
  read_all("Renamed Twice", "WT NEW");
  auto w3 = call(p.port(), "PUT", "/api/resource/Customer/" + url_encode(c), auth(), R"({"customer_name":"Renamed Thrice"})");
  ASSERT_EQ(w3.status, 200) << w3.body;
  read_all("Renamed Thrice", "WT NEW");

  // One entry per endpoint and row: the document (this user's), the summary, the history.
  const auto cache = service_config().redis_cache;
  Process scan({"redis-cli", "-h", cache.host, "-p", std::to_string(cache.port), "--scan", "--pattern", "pitstop:" + site + ":e:*"});
  ASSERT_TRUE(scan.wait(10s));
  const std::string keys = scan.log();
  EXPECT_EQ(std::count(keys.begin(), keys.end(), '\n'), 3) << keys;

  // A delete by any spelling is seen by every spelling.
  ASSERT_EQ(call(p.port(), "DELETE", "/api/resource/Vehicle/" + url_encode(vs[5]), auth()).status, 202);
  for (const auto& n : vs) {
    EXPECT_EQ(call(p.port(), "GET", history + url_encode(n), auth()).status, 404) << n;
    EXPECT_EQ(call(p.port(), "GET", "/api/resource/Vehicle/" + url_encode(n), auth()).status, 404) << n;
  }
}

TEST_F(Writes, OptimisticConcurrencyRefusesStaleUpdates) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  auto created = call(p.port(), "POST", kOrders, auth(), order_body(c, v));
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string name = json_field(created.body, {"data", "name"});
  const std::string seen = json_field(created.body, {"data", "modified"});
  auto first = call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"status":"In Progress","modified":")" + seen + "\"}");
  ASSERT_EQ(first.status, 200) << first.body;
  // Another client still holds the old version.
  auto stale = call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"status":"Cancelled","modified":")" + seen + "\"}");
  EXPECT_EQ(stale.status, 417);
  EXPECT_EQ(json_field(stale.body, {"exc_type"}), "TimestampMismatchError");
  EXPECT_EQ(q("SELECT status FROM `tabService Order` WHERE name = '" + name + "'"), "In Progress");
  // Renames are not updates.
  auto rename = call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"name":"SO-OTHER"})");
  EXPECT_EQ(rename.status, 417);
  // A name that exists is a conflict (a field-named doctype: a series would name it anew).
  auto dup = call(p.port(), "POST", "/api/resource/Service%20Type", auth(), R"({"service_name":"Oil Change"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(json_field(dup.body, {"exc_type"}), "DuplicateEntryError");
  // What others link to cannot be deleted.
  auto linked = call(p.port(), "DELETE", "/api/resource/Customer/" + c, auth());
  EXPECT_EQ(linked.status, 417);
  EXPECT_EQ(json_field(linked.body, {"exc_type"}), "LinkExistsError");
}

TEST_F(Writes, ConcurrentUpdatesOfOneDocumentApplyWhole) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  auto created = call(p.port(), "POST", kOrders, auth(), order_body(c, v));
  ASSERT_EQ(created.status, 200);
  const std::string name = json_field(created.body, {"data", "name"});
  std::vector<std::future<int>> results;
  for (int i = 0; i < 24; ++i)
    results.push_back(std::async(std::launch::async, [&, i] {
      // Each update sets two fields to the same number: a half-applied one would mix them.
      const std::string n = std::to_string(i);
      return call(p.port(), "PUT", kOrders + "/" + name, auth(), R"({"description":"v)" + n + R"(","estimated_cost":)" + n + "}").status;
    }));
  for (auto& r : results) EXPECT_EQ(r.get(), 200);
  auto row = q("SELECT description, estimated_cost FROM `tabService Order` WHERE name = '" + name + "'");
  auto tab = row.find('\t');
  ASSERT_NE(tab, std::string::npos);
  EXPECT_EQ(row.substr(0, tab), std::string("v").append(std::to_string(std::stoi(row.substr(tab + 1)))));
}

TEST_F(Writes, NamingSeriesHasNoDuplicatesAndNoGaps) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  std::vector<std::future<RawClient::Response>> results;
  for (int i = 0; i < 40; ++i)
    results.push_back(std::async(std::launch::async, [&] { return call(p.port(), "POST", kOrders, auth(), order_body(c, v)); }));
  std::set<long> numbers;
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string name = json_field(r.body, {"data", "name"});
    numbers.insert(std::stol(name.substr(name.rfind('-') + 1)));
  }
  ASSERT_EQ(numbers.size(), 40u);
  // Consecutive, unless another test's inserts took numbers in between: check against the rows.
  const long first = *numbers.begin(), last = *numbers.rbegin();
  const std::string prefix = "SO-" + year() + "-";
  auto count = q("SELECT COUNT(*) FROM `tabService Order` WHERE name LIKE '" + prefix + "%' AND "
                 "CAST(SUBSTRING(name, " + std::to_string(prefix.size() + 1) + ") AS UNSIGNED) BETWEEN " +
                 std::to_string(first) + " AND " + std::to_string(last));
  EXPECT_EQ(std::stol(count), last - first + 1) << "a gap in the series between " << first << " and " << last;
}

TEST_F(Writes, ReadYourWritesOnThisAndAnotherInstance) {
  const std::string site = unique_site();
  Pitstop a({{"PITSTOP_SITE", site}});
  Pitstop b({{"PITSTOP_SITE", site}});
  auto [c, v] = customer_with_vehicle();
  const std::string summary = "/api/method/universal_workshop.api.get_customer_summary?customer=" + c;
  const std::string doc = "/api/resource/Customer/" + c;
  for (auto* p : {&a, &b}) {
    call(p->port(), "GET", summary, auth());
    call(p->port(), "GET", doc, auth());
    EXPECT_TRUE(has(cache_status(call(p->port(), "GET", summary, auth())), "hit"));
    EXPECT_TRUE(has(cache_status(call(p->port(), "GET", doc, auth())), "hit"));
  }
  auto renamed = call(a.port(), "PUT", "/api/resource/Customer/" + c, auth(), R"({"customer_name":"Renamed"})");
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  for (auto* p : {&a, &b}) {
    auto s = call(p->port(), "GET", summary, auth());
    EXPECT_EQ(json_field(s.body, {"message", "customer", "customer_name"}), "Renamed") << cache_status(s);
    auto d = call(p->port(), "GET", doc, auth());
    EXPECT_EQ(json_field(d.body, {"data", "customer_name"}), "Renamed") << cache_status(d);
  }
  // A new order moves the summary's counts, on both instances.
  auto order = call(b.port(), "POST", kOrders, auth(), order_body(c, v));
  ASSERT_EQ(order.status, 200);
  for (auto* p : {&a, &b}) EXPECT_EQ(json_field(call(p->port(), "GET", summary, auth()).body, {"message", "total_orders"}), "1");
  // Moving the order to another customer invalidates both customers' answers.
  auto [c2, v2] = customer_with_vehicle();
  const std::string summary2 = "/api/method/universal_workshop.api.get_customer_summary?customer=" + c2;
  EXPECT_EQ(json_field(call(a.port(), "GET", summary2, auth()).body, {"message", "total_orders"}), "0");
  auto moved = call(a.port(), "PUT", kOrders + "/" + json_field(order.body, {"data", "name"}), auth(),
                    R"({"customer":")" + c2 + R"(","vehicle":")" + v2 + "\"}");
  ASSERT_EQ(moved.status, 200) << moved.body;
  for (auto* p : {&a, &b}) {
    EXPECT_EQ(json_field(call(p->port(), "GET", summary, auth()).body, {"message", "total_orders"}), "0");
    EXPECT_EQ(json_field(call(p->port(), "GET", summary2, auth()).body, {"message", "total_orders"}), "1");
  }
}

TEST_F(Writes, ChangesAroundPitstopAreSeenWithinARelayInterval) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  const std::string doc = "/api/resource/Customer/" + c;
  call(p.port(), "GET", doc, auth());
  ASSERT_TRUE(has(cache_status(call(p.port(), "GET", doc, auth())), "hit"));
  q("UPDATE `tabCustomer` SET customer_name = 'Changed in the desk' WHERE name = '" + c + "'");
  const auto started = std::chrono::steady_clock::now();
  std::string name;
  while (std::chrono::steady_clock::now() - started < 5s) {
    name = json_field(call(p.port(), "GET", doc, auth()).body, {"data", "customer_name"});
    if (name == "Changed in the desk") break;
    std::this_thread::sleep_for(20ms);
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(name, "Changed in the desk");
  // One relay interval (250 ms) plus a margin.
  EXPECT_LT(took, 1250ms) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  // Deletes too: the document is gone from the answers.
  q("DELETE FROM `tabVehicle` WHERE name = '" + v + "'; DELETE FROM `tabCustomer` WHERE name = '" + c + "'");
  int status = 0;
  for (int i = 0; i < 100 && status != 404; ++i) {
    status = call(p.port(), "GET", doc, auth()).status;
    if (status != 404) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(status, 404);
}

// With the binary log (the services' MariaDB writes one), a change around pitstop is relayed as
// it commits: here the relay's own interval is a minute, so only the binary log can explain a
// fresh answer within seconds. pitstop's own writes do not wake the relay (their writer delivers
// them).
TEST_F(Writes, TheBinaryLogWakesTheRelayForChangesAroundPitstopOnly) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_INVALIDATION_RELAY_INTERVAL_MS", "60000"}, {"PITSTOP_INVALIDATION_BINLOG", "on"}});
  auto readyz = [&] { return call(p.port(), "GET", "/readyz", auth()).body; };
  std::string ready;
  for (int i = 0; i < 100 && !has(ready, "\"binlog_following\":true"); ++i) {
    ready = readyz();
    if (!has(ready, "\"binlog_following\":true")) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(has(ready, "\"binlog_following\":true")) << ready;
  auto wakes = [&] { return std::stol(json_field(readyz(), {"checks", "outbox_relay", "binlog_wakes"})); };
  // Other tests write beside this one (other sites' rows wake the relay, as they must): what
  // tells is that this site's own rows are seen and left to their writer.
  auto own_rows = [&] { return std::stol(json_field(readyz(), {"checks", "outbox_relay", "binlog_own_rows"})); };
  auto [c, v] = customer_with_vehicle();
  const std::string doc = "/api/resource/Customer/" + c;
  call(p.port(), "GET", doc, auth());
  ASSERT_TRUE(has(cache_status(call(p.port(), "GET", doc, auth())), "hit"));
  const long own_before = own_rows();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(call(p.port(), "PUT", doc, auth(), "{\"territory\":\"T" + std::to_string(i) + "\"}").status, 200);
  ASSERT_TRUE(has(cache_status(call(p.port(), "GET", doc, auth())), "fwd="));
  ASSERT_TRUE(has(cache_status(call(p.port(), "GET", doc, auth())), "hit"));
  long own = own_rows();
  for (int i = 0; i < 100 && own - own_before < 3; ++i) {
    std::this_thread::sleep_for(20ms);
    own = own_rows();
  }
  EXPECT_EQ(own - own_before, 3) << "pitstop's own writes were not recognised as its own: they woke the relay";
  const long before = wakes();
  q("UPDATE `tabCustomer` SET customer_name = 'Changed in the desk' WHERE name = '" + c + "'");
  std::string name;
  for (int i = 0; i < 100 && name != "Changed in the desk"; ++i) {
    name = json_field(call(p.port(), "GET", doc, auth()).body, {"data", "customer_name"});
    if (name != "Changed in the desk") std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(name, "Changed in the desk") << "not relayed within 2 s with a relay interval of a minute";
  EXPECT_GT(wakes(), before);
}

TEST_F(Writes, AnOrderWriteDropsWhatShowsTheOrderAndNothingElse) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [c1, v1] = customer_with_vehicle();
  auto [c2, v2] = customer_with_vehicle();
  const std::string tech = R"(,"technician_assigned":"TECH-0001")";
  auto o1 = call(p.port(), "POST", kOrders, auth(), order_body(c1, v1, tech));
  auto o2 = call(p.port(), "POST", kOrders, auth(), order_body(c2, v2, tech));
  ASSERT_EQ(o1.status, 200) << o1.body;
  ASSERT_EQ(o2.status, 200) << o2.body;
  const std::string api = "/api/method/universal_workshop.api.";
  const std::string h1 = api + "get_vehicle_history?vehicle=" + v1, h2 = api + "get_vehicle_history?vehicle=" + v2;
  const std::string s1 = api + "get_customer_summary?customer=" + c1, s2 = api + "get_customer_summary?customer=" + c2;
  const std::string skills = api + "get_technician_skills?technician=TECH-0001";
  for (const auto& t : {h1, h2, s1, s2, skills}) {
    call(p.port(), "GET", t, auth());
    ASSERT_TRUE(has(cache_status(call(p.port(), "GET", t, auth())), "hit")) << t;
  }
  auto put = call(p.port(), "PUT", kOrders + "/" + json_field(o1.body, {"data", "name"}), auth(), R"({"status":"In Progress"})");
  ASSERT_EQ(put.status, 200) << put.body;
  // What shows the order is fresh at once...
  auto fresh = call(p.port(), "GET", h1, auth());
  EXPECT_TRUE(has(cache_status(fresh), "fwd=")) << cache_status(fresh);
  EXPECT_TRUE(has(fresh.body, "\"status\":\"In Progress\"")) << fresh.body;
  EXPECT_TRUE(has(cache_status(call(p.port(), "GET", s1, auth())), "fwd="));
  // ...and the same technician's other work and skills stay cached.
  for (const auto& t : {h2, s2, skills}) EXPECT_TRUE(has(cache_status(call(p.port(), "GET", t, auth())), "hit")) << t;
}

// Outbox ids are taken at insert and become visible at commit: a long transaction's row appears
// behind rows the relay has already passed. It must still be delivered.
TEST_F(Writes, ALateCommitBehindLaterChangesIsStillDelivered) {
  Pitstop p({{"PITSTOP_SITE", unique_site()}});
  auto [slow, v1] = customer_with_vehicle();
  auto [fast, v2] = customer_with_vehicle();
  const std::string doc = "/api/resource/Customer/" + slow;
  call(p.port(), "GET", doc, auth());
  ASSERT_TRUE(has(cache_status(call(p.port(), "GET", doc, auth())), "hit"));
  // The slow transaction takes its outbox id first and commits 3 s later; meanwhile a later
  // change commits and the relay delivers it (several passes).
  auto late = std::async(std::launch::async, [&, c = slow] {
    q("START TRANSACTION; UPDATE `tabCustomer` SET customer_name = 'Committed late' WHERE name = '" + c +
      "'; SELECT SLEEP(3); COMMIT;");
  });
  std::this_thread::sleep_for(300ms);
  q("UPDATE `tabCustomer` SET customer_name = 'Committed at once' WHERE name = '" + fast + "'");
  std::this_thread::sleep_for(1000ms);
  auto before = call(p.port(), "GET", doc, auth());
  EXPECT_TRUE(has(cache_status(before), "hit")) << "the old answer should still be cached: " << cache_status(before);
  EXPECT_EQ(json_field(before.body, {"data", "customer_name"}), "Writer " + slow);
  EXPECT_EQ(json_field(call(p.port(), "GET", "/api/resource/Customer/" + fast, auth()).body, {"data", "customer_name"}), "Committed at once");
  late.get();
  const auto committed = std::chrono::steady_clock::now();
  std::string name;
  while (std::chrono::steady_clock::now() - committed < 5s) {
    name = json_field(call(p.port(), "GET", doc, auth()).body, {"data", "customer_name"});
    if (name == "Committed late") break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(name, "Committed late") << "the late row was skipped: the answer stays stale until its TTL";
}

TEST_F(Writes, EventsArePublishedAndStreamedInTheDocumentedFormat) {
  const std::string site = unique_site();
  Pitstop p({{"PITSTOP_SITE", site}});
  auto [c, v] = customer_with_vehicle();
  auto r = call(p.port(), "PUT", "/api/resource/Customer/" + c, auth(), R"({"territory":"North"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto queue = service_config().redis_queue;
  // The site's relay also streams other sites' outbox rows (every row is every site's to
  // deliver), so the newest entry may be another test's: find this write's among the newest.
  Process cli({"redis-cli", "-h", queue.host, "-p", std::to_string(queue.port), "--raw", "XREVRANGE",
               "pitstop:" + site + ":invalidations:stream", "+", "-", "COUNT", "500"});
  ASSERT_TRUE(cli.wait(10s));
  std::istringstream lines(cli.log());
  std::string json;
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("{") && has(line, "\"doc:Customer/" + c + "\"") && has(line, "\"source\":\"pitstop\"")) {
      json = line;
      break;
    }
  ASSERT_FALSE(json.empty()) << cli.log();
  EXPECT_EQ(json_field(json, {"source"}), "pitstop");
  EXPECT_EQ(json_field(json, {"site"}), site);
  EXPECT_EQ(json_field(json, {"id"}).rfind("outbox:", 0), 0u) << json;
  EXPECT_TRUE(has(json, "\"customer:" + c + "\"")) << json;
  EXPECT_TRUE(has(json, "\"doc:Customer/" + c + "\"")) << json;
  EXPECT_TRUE(has(json, "\"doctype:Customer\"")) << json;
  EXPECT_EQ(json_field(json, {"time"}).back(), 'Z');
  // Its outbox row is done.
  const std::string id = json_field(json, {"id"}).substr(7);
  EXPECT_EQ(q("SELECT done FROM `pitstop_outbox` WHERE id = " + id), "1");
}

TEST_F(Writes, RedisDownDuringAWriteLeavesTheOutboxToTheRelay) {
  RedisServer cache(true);
  const std::string site = unique_site();
  auto p = std::make_unique<Pitstop>(std::map<std::string, std::string>{{"PITSTOP_SITE", site}, {"PITSTOP_REDIS_CACHE_URL", cache.url()}});
  auto bystander = std::make_unique<Pitstop>(std::map<std::string, std::string>{{"PITSTOP_SITE", unique_site()}});
  auto [c, v] = customer_with_vehicle();
  const std::string doc = "/api/resource/Customer/" + c;
  ASSERT_TRUE(has(cache_status(call(p->port(), "GET", doc, auth())), "stored"));
  cache.stop();
  auto r = call(p->port(), "PUT", doc, auth(), R"({"customer_name":"Written while Redis was down"})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto pending = q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE done = 0 AND source = 'pitstop' AND tags LIKE '%\"doc:Customer/" + c + "\"%'");
  EXPECT_EQ(pending, "1");
  // Another site's relay delivers the row to its own caches, but the row stays undelivered for
  // this site, whose Redis still holds the old answer.
  std::this_thread::sleep_for(1000ms);
  EXPECT_EQ(q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE done = 0 AND source = 'pitstop' AND tags LIKE '%\"doc:Customer/" + c + "\"%'"), "1");
  bystander.reset();
  // This instance never answers from what it knows may be stale.
  EXPECT_EQ(json_field(call(p->port(), "GET", doc, auth()).body, {"data", "customer_name"}), "Written while Redis was down");
  cache.start();
  std::string done;
  for (int i = 0; i < 200 && done != "0"; ++i) {
    std::this_thread::sleep_for(50ms);
    done = q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE done = 0 AND source = 'pitstop' AND tags LIKE '%\"doc:Customer/" + c + "\"%'");
  }
  EXPECT_EQ(done, "0");
  // A new instance reading from the same Redis sees the new value.
  Pitstop other({{"PITSTOP_SITE", site}, {"PITSTOP_REDIS_CACHE_URL", cache.url()}});
  EXPECT_EQ(json_field(call(other.port(), "GET", doc, auth()).body, {"data", "customer_name"}), "Written while Redis was down");
}

TEST_F(Writes, AKilledInstanceLeavesNothingStaleAfterRestart) {
  RedisServer cache(true);
  const std::string site = unique_site();
  std::map<std::string, std::string> env{{"PITSTOP_SITE", site}, {"PITSTOP_REDIS_CACHE_URL", cache.url()}};
  auto p = std::make_unique<Pitstop>(env);
  auto [c, v] = customer_with_vehicle();
  const std::string doc = "/api/resource/Customer/" + c;
  auto cached = call(p->port(), "GET", doc, auth());
  ASSERT_TRUE(has(cache_status(cached), "stored"));
  // Commit with Redis unreachable, then die before anything could deliver the invalidation: the
  // old answer is still in Redis and only the outbox knows.
  cache.stop();
  ASSERT_EQ(call(p->port(), "PUT", doc, auth(), R"({"customer_name":"After the crash"})").status, 200);
  p->process().signal(SIGKILL);
  p->process().wait(10s);
  cache.start();
  p = std::make_unique<Pitstop>(env);
  // Ready means the relay has caught up: the stale answer is gone.
  auto r = call(p->port(), "GET", doc, auth());
  EXPECT_EQ(json_field(r.body, {"data", "customer_name"}), "After the crash") << cache_status(r);
  EXPECT_EQ(q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE done = 0 AND source = 'pitstop' AND tags LIKE '%\"doc:Customer/" + c + "\"%'"), "0");
}

TEST_F(Writes, TheErpsOwnDocumentCacheIsDroppedToo) {
  RedisServer erp;
  Pitstop p({{"PITSTOP_SITE", unique_site()}, {"PITSTOP_ERP_REDIS_CACHE_URL", erp.url()}, {"PITSTOP_ERP_DB_NAME", "_erpdb"}});
  auto [c, v] = customer_with_vehicle();
  const std::string key = "_erpdb|document_cache::Customer::" + c;
  Process set({"redis-cli", "-p", std::to_string(erp.port()), "SET", key, "old copy"});
  set.wait(10s);
  ASSERT_EQ(call(p.port(), "PUT", "/api/resource/Customer/" + c, auth(), R"({"territory":"South"})").status, 200);
  Process exists({"redis-cli", "-p", std::to_string(erp.port()), "EXISTS", key});
  exists.wait(10s);
  EXPECT_TRUE(has(exists.log(), "0")) << exists.log();
}

TEST(Triggers, TheCommittedFileMatchesTheRules) {
  Process gen({(binary_dir() / "pitstop").string(), "--config", (source_dir() / "config/pitstop.json").string(), "--print-triggers"});
  ASSERT_TRUE(gen.wait(10s));
  std::ifstream in(source_dir() / "sql/triggers.sql");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(gen.log(), ss.str()) << "sql/triggers.sql is out of date: run build/pitstop --print-triggers > sql/triggers.sql";
}
