#include <gtest/gtest.h>

#include <fstream>

#include "proxy/config/config.hpp"
#include "proxy/origin/origin.hpp"
#include "proxy/rules/rules.hpp"
#include "tests/support/support.hpp"

namespace fs = std::filesystem;
using namespace pitstop;
using rules::RuleSet;
using rules::Values;

namespace {

const char* const kNoEnv[] = {nullptr};

config::Config cfg() { return config::load((test::source_dir() / "config/pitstop.json").string(), kNoEnv); }

std::shared_ptr<const RuleSet> workshop() {
  static auto set = RuleSet::load((test::source_dir() / "rules/workshop.json").string(), cfg());
  return set;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Loads a variant of workshop.json from a temporary file (queries_dir made absolute).
std::string load_error(std::string text) {
  auto path = test::scratch_dir() / "rules.json";
  const std::string rel = "\"../sql/queries\"";
  if (auto pos = text.find(rel); pos != std::string::npos)
    text.replace(pos, rel.size(), "\"" + (test::source_dir() / "sql/queries").string() + "\"");
  std::ofstream(path) << text;
  std::string message;
  try {
    auto set = RuleSet::load(path.string(), cfg(), origin::make_origin);
  } catch (const config::ConfigError& e) {
    message = e.what();
  }
  fs::remove(path);
  return message;
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

}  // namespace

TEST(Rules, WorkshopRulesCoverTheHotEndpoints) {
  auto set = workshop();
  for (const char* name : {"get_service_catalog", "get_customer_summary", "get_vehicle_history", "get_technician_skills",
                           "get_workshop_schedule", "get_parts_availability"}) {
    Values captures;
    auto* r = set->match(http::Method::get, std::string("/api/method/universal_workshop.api.") + name, captures);
    ASSERT_NE(r, nullptr) << name;
    EXPECT_EQ(r->kind, rules::OriginKind::sql);
  }
  Values captures;
  auto* doc = set->match(http::Method::get, "/api/resource/Service Order/SO-2026-00001", captures);
  ASSERT_NE(doc, nullptr);
  EXPECT_EQ(doc->kind, rules::OriginKind::resource_doc);
  EXPECT_EQ(doc->scope, rules::Scope::user);
  EXPECT_EQ(*captures.find("doctype"), "Service Order");
  EXPECT_EQ(*captures.find("name"), "SO-2026-00001");
  auto* list = set->match(http::Method::get, "/api/resource/Customer", captures);
  ASSERT_NE(list, nullptr);
  EXPECT_EQ(list->kind, rules::OriginKind::resource_list);
  EXPECT_EQ(set->match(http::Method::get, "/api/method/universal_workshop.api.get_service_catalog", captures)->scope,
            rules::Scope::shared);
  EXPECT_EQ(set->match(http::Method::get, "/api/method/universal_workshop.api.get_service_catalog", captures)->category,
            "service_catalog");
}

TEST(Rules, MatchingDecodesPathsAndToleratesTrailingSlash) {
  auto set = workshop();
  Values c;
  auto decoded = rules::decode_path("/api/resource/Service%20Order/SO%2F1%2B2/");
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, "/api/resource/Service Order/SO/1+2/");
  auto* r = set->match(http::Method::get, *decoded, c);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(*c.find("name"), "SO/1+2");  // a name may contain '/', and '+' is not a space in a path
  EXPECT_NE(set->match(http::Method::head, "/api/method/universal_workshop.api.get_service_catalog/", c), nullptr);
  EXPECT_EQ(set->match(http::Method::post, "/api/method/universal_workshop.api.get_service_catalog", c), nullptr);
  EXPECT_EQ(set->match(http::Method::get, "/api/resource/Nonexistent/x", c), nullptr);
  // Child tables are read through their parent, not on their own.
  EXPECT_EQ(set->match(http::Method::get, "/api/resource/Service Order Item", c), nullptr);
  EXPECT_EQ(set->match(http::Method::get, "/api/resource/Customer/", c)->kind, rules::OriginKind::resource_list);
  EXPECT_EQ(set->match(http::Method::get, "/api/resource//x", c), nullptr);
  EXPECT_EQ(set->match(http::Method::get, "api/resource/Customer", c), nullptr);
}

TEST(Rules, HostilePathsAndQueriesAreRefused) {
  auto nul = rules::decode_path("/api/resource/Customer%00");
  ASSERT_FALSE(nul);
  EXPECT_EQ(nul.error().status, 400u);
  EXPECT_FALSE(rules::decode_path("/api/%ff%fe"));
  // Malformed escapes stay literal, as werkzeug leaves them.
  EXPECT_EQ(*rules::decode_path("/a%zz%4"), "/a%zz%4");
  EXPECT_FALSE(rules::parse_query("a=%00"));
  EXPECT_FALSE(rules::parse_query("a=%c3%28"));
  std::string many;
  for (int i = 0; i < 200; ++i) many.append("p").append(std::to_string(i)).append("=1&");
  EXPECT_FALSE(rules::parse_query(many));
  auto q = rules::parse_query("customer=CUST%2D00001&customer=other&x+y=a+b&empty&=v");
  ASSERT_TRUE(q);
  EXPECT_EQ(*q->find("customer"), "CUST-00001");  // the first value wins
  EXPECT_EQ(*q->find("x y"), "a b");              // '+' is a space in a query
  EXPECT_EQ(*q->find("empty"), "");
}

TEST(Rules, ParametersAreCheckedAndNormalised) {
  auto set = workshop();
  Values c;
  auto* schedule = set->match(http::Method::get, "/api/method/universal_workshop.api.get_workshop_schedule", c);
  ASSERT_NE(schedule, nullptr);
  auto bind = [&](const rules::Rule& r, const std::string& query) { return rules::bind_params(r, *rules::parse_query(query)); };
  auto missing = bind(*schedule, "other=1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().status, 417u);
  EXPECT_EQ(missing.error().exc_type, "ValidationError");
  EXPECT_NE(missing.error().message.find("date"), std::string::npos);
  for (const char* bad : {"date=2026-02-30", "date=2026-13-01", "date=26-01-01", "date=2026-01-01x", "date=yesterday",
                          "date=2026-01-01%27%20OR%201%3D1"}) {
    auto r = bind(*schedule, bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("date"), std::string::npos);
  }
  EXPECT_TRUE(bind(*schedule, "date=2024-02-29"));
  EXPECT_FALSE(bind(*schedule, "date=2023-02-29"));
  auto* summary = set->match(http::Method::get, "/api/method/universal_workshop.api.get_customer_summary", c);
  EXPECT_FALSE(bind(*summary, "customer=" + std::string(141, 'x')));
  EXPECT_TRUE(bind(*summary, "customer=" + std::string(140, 'x')));
  // Length counts characters, not bytes: 140 umlauts are 280 bytes.
  std::string umlauts;
  for (int i = 0; i < 140; ++i) umlauts += "%C3%BC";
  EXPECT_TRUE(bind(*summary, "customer=" + umlauts));
  // SQL metacharacters are only characters: they are bound later, never spliced.
  auto sqlish = bind(*summary, "customer=x%27%3B%20DROP%20TABLE%20tabCustomer%3B--");
  ASSERT_TRUE(sqlish);
  EXPECT_EQ(*sqlish->find("customer"), "x'; DROP TABLE tabCustomer;--");
}

TEST(Rules, CacheKeysAreCanonicalAndScoped) {
  auto set = workshop();
  Values c1, c2;
  auto* summary = set->match(http::Method::get, "/api/method/universal_workshop.api.get_customer_summary", c1);
  auto key_of = [&](const rules::Rule& r, const Values& captures, const std::string& query, const std::string& user) {
    auto p = rules::bind_params(r, *rules::parse_query(query));
    return rules::cache_key("site", r, captures, *p, "", user);
  };
  // Parameter order, encoding and unknown parameters do not matter.
  EXPECT_EQ(key_of(*summary, c1, "customer=CUST-1&_=123", "a"), key_of(*summary, c1, "_=9&customer=CUST%2D1", "a"));
  // Shared scope: users share the entry.
  EXPECT_EQ(key_of(*summary, c1, "customer=CUST-1", "a"), key_of(*summary, c1, "customer=CUST-1", "b"));
  EXPECT_NE(key_of(*summary, c1, "customer=CUST-1", "a"), key_of(*summary, c1, "customer=CUST-2", "a"));
  // User scope: never.
  auto* doc = set->match(http::Method::get, "/api/resource/Customer/CUST-1", c2);
  EXPECT_NE(key_of(*doc, c2, "", "alice@x"), key_of(*doc, c2, "", "bob@x"));
  // Values that contain the separator cannot forge another key.
  Values a{{{"doctype", "Customer"}, {"name", "x\x1fu=bob"}}};
  Values b{{{"doctype", "Customer"}, {"name", "x"}}};
  EXPECT_NE(rules::cache_key("site", *doc, a, {}, "", "alice"), rules::cache_key("site", *doc, b, {}, "", "bob"));
}

TEST(Rules, TagsComeFromParametersAndAnswers) {
  auto set = workshop();
  Values c;
  auto* history = set->match(http::Method::get, "/api/method/universal_workshop.api.get_vehicle_history", c);
  ASSERT_NE(history, nullptr);
  Values params{{{"vehicle", "VEH-1"}}};
  const std::string body =
      R"({"message":{"vehicle":{"name":"VEH-1","customer":"CUST-7"},"orders":[{"technician_assigned":"TECH-1"},)"
      R"({"technician_assigned":"TECH-2"},{"technician_assigned":null},{"technician_assigned":"TECH-1"}]}})";
  auto tags = rules::render_tags(history->tags, c, params, body);
  // Names shown from other documents depend on those documents only (doc:…), not on every order
  // of that customer or technician (customer:…, technician:…).
  std::vector<std::string> expected{"doc:Customer/CUST-7", "doc:Technician/TECH-1", "doc:Technician/TECH-2", "doc:Vehicle/VEH-1",
                                    "vehicle:VEH-1"};
  EXPECT_EQ(tags, expected);
  // A broken answer yields only the parameter tags.
  auto partial = rules::render_tags(history->tags, c, params, "not json");
  EXPECT_EQ(partial, (std::vector<std::string>{"doc:Vehicle/VEH-1", "vehicle:VEH-1"}));
}

TEST(Rules, MistakesAreRefusedWithIndexPathAndFix) {
  const std::string text = read(test::source_dir() / "rules/workshop.json");
  auto e = load_error(replace(text, "\"category\": \"customer_summary\"", "\"category\": \"customer_sumary\""));
  EXPECT_NE(e.find("$.rules[1] (customer_summary).category: unknown category \"customer_sumary\""), std::string::npos) << e;
  EXPECT_NE(e.find("add it to cache.categories"), std::string::npos) << e;

  e = load_error(replace(text, "\"tags\": [\"customer:{customer}\", \"doc:Customer/{customer}\"]",
                         "\"tags\": [\"customer:{customr}\", \"doc:Customer/{customer}\"]"));
  EXPECT_NE(e.find("$.rules[1] (customer_summary).tags[0]"), std::string::npos) << e;
  EXPECT_NE(e.find("{customr} is not a parameter"), std::string::npos) << e;
  EXPECT_NE(e.find("fix the name or add the parameter"), std::string::npos) << e;

  e = load_error(replace(text, "\"path\": \"/api/method/universal_workshop.api.get_parts_availability\"",
                         "\"path\": \"/api/method/universal_workshop.api.get_service_catalog\""));
  EXPECT_NE(e.find("$.rules[5] (parts_availability).path: the same route as $.rules[0] (service_catalog)"), std::string::npos) << e;

  e = load_error(replace(text, "\"origin\": { \"sql\": \"parts_availability\" }", "\"origin\": { \"sql\": \"nope\" }"));
  EXPECT_NE(e.find("no query file"), std::string::npos) << e;
  e = load_error(replace(text, "\"scope\": \"shared\"", "\"scope\": \"everyone\""));
  EXPECT_NE(e.find(".scope: expected \"shared\" or \"user\""), std::string::npos) << e;
  e = load_error(replace(text, "\"method\": \"GET\"", "\"methd\": \"GET\""));
  EXPECT_NE(e.find("$.rules[0] (service_catalog).methd: unknown key"), std::string::npos) << e;
  e = load_error(replace(text, "\"children\": { \"items\": \"Service Order Item\" }", "\"children\": { \"items\": \"Missing\" }"));
  EXPECT_NE(e.find("names \"Missing\", which is not in $.doctypes"), std::string::npos) << e;
  e = load_error(replace(text, "\"reveals\": [\"Service Type\"]", "\"reveals\": [\"\"]"));
  EXPECT_NE(e.find("$.rules[0] (service_catalog).reveals: expected doctype names"), std::string::npos) << e;
  e = load_error(replace(text, "\"reveals\": [\"Service Type\"]", "\"reveals\": \"Service Type\""));
  EXPECT_NE(e.find("$.rules[0] (service_catalog).reveals"), std::string::npos) << e;
  e = load_error("{\"rules\": [");
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  e = load_error(replace(text, "\"path\": \"/api/resource/{doctype}\"", "\"path\": \"/api/resource/{doctype}/{a*}/x\""));
  EXPECT_NE(e.find("must be the last segment"), std::string::npos) << e;
}

TEST(Rules, TagTemplatesParseStrictly) {
  rules::TagTemplate t;
  std::string why;
  EXPECT_TRUE(rules::parse_tag_template("doc:{doctype}/{name}", t, why));
  EXPECT_EQ(t.pieces.size(), 4u);
  EXPECT_TRUE(rules::parse_tag_template("x:{$.message[*].a.b}", t, why));
  EXPECT_EQ(t.pieces[1].path, (std::vector<std::string>{"message", "*", "a", "b"}));
  for (const char* bad : {"x:{", "x:}", "x:{$}", "x:{$.}", "x:{$.a[0]}", "x:{Bad-Name}", ""})
    EXPECT_FALSE(rules::parse_tag_template(bad, t, why)) << bad;
}

TEST(Rules, SubmittableDoctypesAndTagsFromStoredNames) {
  auto set = workshop();
  const auto* order = set->doctype("Service Order");
  ASSERT_TRUE(order);
  EXPECT_TRUE(order->is_submittable);
  EXPECT_EQ(order->allow_on_submit, std::vector<std::string>{"status"});
  ASSERT_TRUE(order->allowed("cancel"));
  EXPECT_EQ(*order->allowed("cancel"), std::vector<std::string>{"Workshop Manager"});
  // submit and cancel fall back to write where a doctype does not name them.
  const auto* customer = set->doctype("Customer");
  EXPECT_FALSE(customer->is_submittable);
  EXPECT_EQ(customer->allowed("submit"), customer->allowed("write"));

  const std::string text = read(test::source_dir() / "rules/workshop.json");
  auto e = load_error(replace(text, "\"is_submittable\": true, ", ""));
  EXPECT_NE(e.find("allow_on_submit"), std::string::npos) << e;
  EXPECT_NE(e.find("only a submittable doctype"), std::string::npos) << e;
  e = load_error(replace(text, "\"parent\": \"Service Order\",", "\"parent\": \"Service Order\", \"is_submittable\": true,"));
  EXPECT_NE(e.find("a child table follows its parent's docstatus"), std::string::npos) << e;
  e = load_error(replace(text, "\"is_submittable\": true", "\"is_submittable\": \"yes\""));
  EXPECT_NE(e.find("is_submittable: expected true or false"), std::string::npos) << e;
  // A tag made from a text parameter that no required result resolves could name a row in a
  // spelling no write produces: refused at load.
  e = load_error(replace(replace(text, "\"tags\": [\"schedule:{date}\",", "\"tags\": [\"bay:{bay}\", \"schedule:{date}\","),
                         "\"params\": { \"date\": { \"type\": \"date\", \"required\": true } },",
                         "\"params\": { \"date\": { \"type\": \"date\", \"required\": true }, \"bay\": { \"type\": \"string\", \"required\": true } },"));
  EXPECT_NE(e.find("{bay} is a text parameter that no result of"), std::string::npos) << e;
  EXPECT_NE(e.find("required <DocType>:bay"), std::string::npos) << e;
}
