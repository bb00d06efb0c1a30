#include "proxy/origin/list_query.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using pitstop::origin::build_list_query;
using pitstop::origin::canonical_list_request;
using pitstop::origin::ListLimits;
using pitstop::origin::ListQuery;
using pitstop::origin::ListRequest;
using pitstop::origin::TableMeta;

namespace {

const TableMeta& service_order() {
  static const TableMeta meta{"Service Order",
                              "tabService Order",
                              {{"name", "varchar"},
                               {"creation", "datetime"},
                               {"modified", "datetime"},
                               {"modified_by", "varchar"},
                               {"owner", "varchar"},
                               {"docstatus", "int"},
                               {"idx", "int"},
                               {"customer", "varchar"},
                               {"vehicle", "varchar"},
                               {"status", "varchar"},
                               {"service_date", "date"},
                               {"technician_assigned", "varchar"},
                               {"service_type", "varchar"},
                               {"estimated_cost", "decimal"},
                               {"total_amount", "decimal"},
                               {"description", "text"},
                               {"naming_series", "varchar"}}};
  return meta;
}

using Strings = std::vector<std::string>;

// `tabService Order`.`col`
std::string col(const std::string& c) { return "`tabService Order`.`" + c + "`"; }

const std::string kSelectName = "SELECT `tabService Order`.`name` FROM `tabService Order`";
const std::string kDefaultOrder = " ORDER BY `tabService Order`.`modified` DESC";
const std::string kLimit = " LIMIT ? OFFSET ?";

ListQuery build(const ListRequest& r, const ListLimits& limits = {}) {
  auto q = build_list_query(service_order(), r, limits);
  EXPECT_TRUE(q.has_value()) << (q.has_value() ? "" : q.error().parameter + ": " + q.error().message);
  return q.has_value() ? *q : ListQuery{};
}

// The error of a request that must fail; checks the parameter it names.
std::string error_of(const ListRequest& r, const std::string& parameter, const ListLimits& limits = {}) {
  auto q = build_list_query(service_order(), r, limits);
  EXPECT_FALSE(q.has_value()) << "accepted: " << (q.has_value() ? q->sql : "");
  if (q.has_value()) return {};
  EXPECT_EQ(q.error().parameter, parameter) << q.error().message;
  EXPECT_FALSE(q.error().message.empty());
  return q.error().message;
}

ListRequest with_filters(const std::string& filters) {
  ListRequest r;
  r.filters = filters;
  return r;
}

// The WHERE clause of a default select over `filters` (checked to have the default shape).
struct Where {
  std::string sql;
  Strings params;
};

Where where_of(const ListRequest& r) {
  ListQuery q = build(r);
  Where w;
  const std::string head = kSelectName + " WHERE ";
  const std::string tail = kDefaultOrder + kLimit;
  if (q.sql.rfind(head, 0) != 0 || q.sql.size() < head.size() + tail.size() ||
      q.sql.compare(q.sql.size() - tail.size(), tail.size(), tail) != 0) {
    ADD_FAILURE() << "unexpected shape: " << q.sql;
    return w;
  }
  w.sql = q.sql.substr(head.size(), q.sql.size() - head.size() - tail.size());
  EXPECT_GE(q.params.size(), 2u);
  EXPECT_EQ(q.params[q.params.size() - 2], "20");
  EXPECT_EQ(q.params.back(), "0");
  w.params.assign(q.params.begin(), q.params.end() - 2);
  return w;
}

void expect_where(const std::string& filters, const std::string& sql, const Strings& params) {
  SCOPED_TRACE(filters);
  Where w = where_of(with_filters(filters));
  EXPECT_EQ(w.sql, sql);
  EXPECT_EQ(w.params, params);
}

std::string canonical(const ListRequest& r) {
  auto c = canonical_list_request(r);
  EXPECT_TRUE(c.has_value()) << (c.has_value() ? "" : c.error().parameter + ": " + c.error().message);
  return c.has_value() ? *c : std::string();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Defaults

TEST(ListQuery, DefaultsToNameByModifiedDescTwentyRows) {
  ListQuery q = build({});
  EXPECT_EQ(q.sql, kSelectName + kDefaultOrder + kLimit);
  EXPECT_EQ(q.params, (Strings{"20", "0"}));
  EXPECT_EQ(q.output_names, (Strings{"name"}));
  EXPECT_TRUE(q.as_dict);
  EXPECT_EQ(q.limit, 20u);
  EXPECT_FALSE(q.capped);
}

TEST(ListQuery, EmptyOrFalsyParametersAreAbsent) {
  // document_list only parses a truthy `fields`; `filters or []` in DatabaseQuery.
  for (const char* fields : {"", "[]", "null", "\"\"", "0"}) {
    ListRequest r;
    r.fields = fields;
    r.filters = fields;
    r.or_filters = fields;
    ListQuery q = build(r);
    EXPECT_EQ(q.sql, kSelectName + kDefaultOrder + kLimit) << fields;
    EXPECT_EQ(q.output_names, (Strings{"name"}));
  }
}

// ---------------------------------------------------------------------------------------------
// fields

TEST(ListQuery, FieldsInEveryAcceptedSpelling) {
  ListRequest r;
  r.fields = R"j(["name", "`status`", "`tabService Order`.`customer`", "tabService Order.vehicle",
                 "`tabService Order`.service_date", "estimated_cost as cost", "total_amount AS `Total Amount`"])j";
  ListQuery q = build(r);
  EXPECT_EQ(q.sql, "SELECT " + col("name") + ", " + col("status") + ", " + col("customer") + ", " + col("vehicle") +
                       ", " + col("service_date") + ", " + col("estimated_cost") + " AS `cost`, " +
                       col("total_amount") + " AS `Total Amount` FROM `tabService Order`" + kDefaultOrder + kLimit);
  EXPECT_EQ(q.output_names, (Strings{"name", "status", "customer", "vehicle", "service_date", "cost", "Total Amount"}));
}

TEST(ListQuery, StarExpandsToAllColumnsInTableOrder) {
  ListRequest r;
  r.fields = R"j(["*"])j";
  ListQuery q = build(r);
  std::string select;
  Strings names;
  for (const auto& c : service_order().columns) {
    if (!select.empty()) select += ", ";
    select += col(c.name);
    names.push_back(c.name);
  }
  EXPECT_EQ(q.sql, "SELECT " + select + " FROM `tabService Order`" + kDefaultOrder + kLimit);
  EXPECT_EQ(q.output_names, names);
  EXPECT_EQ(q.output_names.size(), 17u);

  r.fields = R"j(["name", "*"])j";
  EXPECT_EQ(build(r).output_names.size(), 18u);
}

TEST(ListQuery, AggregatesKeepFrappesResultKeys) {
  ListRequest r;
  r.fields = R"j(["count(*)"])j";
  ListQuery q = build(r);
  // A lone aggregate without group by gets no default order (set_order_by).
  EXPECT_EQ(q.sql, "SELECT COUNT(*) AS `count(*)` FROM `tabService Order`" + kLimit);
  EXPECT_EQ(q.output_names, (Strings{"count(*)"}));

  r.fields = R"j(["count(name) as total", "sum(estimated_cost)", "AVG( total_amount ) as avg_total",
                 "min(service_date)", "max(`tabService Order`.`modified`) as last"])j";
  q = build(r);
  EXPECT_EQ(q.sql, "SELECT COUNT(" + col("name") + ") AS `total`, SUM(" + col("estimated_cost") +
                       ") AS `sum(estimated_cost)`, AVG(" + col("total_amount") + ") AS `avg_total`, MIN(" +
                       col("service_date") + ") AS `min(service_date)`, MAX(" + col("modified") +
                       ") AS `last` FROM `tabService Order`" + kDefaultOrder + kLimit);
  EXPECT_EQ(q.output_names, (Strings{"total", "sum(estimated_cost)", "avg_total", "min(service_date)", "last"}));
}

TEST(ListQuery, RejectsFieldsFrappeWouldNotRun) {
  for (const char* f : {
           R"j(["nonexistent"])j",
           R"j(["Status"])j",  // DocField names are case-sensitive
           R"j(["name, version()"])j",
           R"j(["version()"])j",
           R"j(["group_concat(name)"])j",
           R"j(["sum(*)"])j",
           R"j(["count(foo)"])j",
           R"j(["count(distinct name)"])j",
           R"j(["(select name from `tabUser`)"])j",
           R"j(["name from `tabUser` where 1=1 --"])j",
           R"j(["name /* comment */"])j",
           R"j(["name # comment"])j",
           R"j(["name; drop table x"])j",
           R"j(["`name"])j",
           R"j(["`tabService Order`.`name"])j",
           R"j(["name as"])j",
           R"j(["name as a b"])j",
           R"j(["name as `a`b`"])j",
           R"j(["* as everything"])j",
           R"j(["`tabService Order`.*"])j",
           R"j([""])j",
           R"j(["   "])j",
           R"j(["@@version"])j",
           R"j(["name\u0000"])j",
           R"j(["stätus"])j",
       }) {
    ListRequest r;
    r.fields = f;
    std::string msg = error_of(r, "fields");
    EXPECT_EQ(msg.rfind("Field not permitted in query: ", 0), 0u) << f << " -> " << msg;
  }
}

TEST(ListQuery, FieldsOfOtherDoctypesAreRefused) {
  for (const char* f : {R"j(["`tabUser`.`name`"])j", R"j(["tabCustomer.customer_name"])j",
                        R"j(["customer.customer_name"])j", R"j(["count(`tabUser`.`name`)"])j"}) {
    ListRequest r;
    r.fields = f;
    EXPECT_NE(error_of(r, "fields").find("other doctypes"), std::string::npos) << f;
  }
}

TEST(ListQuery, FieldsMustBeAJsonListOfStrings) {
  for (const char* f : {"name", "*", "{\"a\":1}", "\"name\"", "5", "[5]", "[[\"status\",\"=\",\"Open\"]]", "[null]",
                        "[\"name\"", "[\"name\"]]"}) {
    ListRequest r;
    r.fields = f;
    error_of(r, "fields");
  }
}

TEST(ListQuery, OptionalColumnsTheTableLacksAreDropped) {
  // set_optional_columns: _seen / _comments & co. vanish from fields and filters when absent.
  ListRequest r;
  r.fields = R"j(["name", "_seen", "_comments"])j";
  r.filters = R"j([["_assign", "like", "%x%"], ["status", "=", "Open"]])j";
  ListQuery q = build(r);
  EXPECT_EQ(q.sql, kSelectName + " WHERE " + col("status") + " = ?" + kDefaultOrder + kLimit);
  EXPECT_EQ(q.output_names, (Strings{"name"}));
  // ... but not from or_filters.
  r.or_filters = R"j([["_seen", "like", "%x%"]])j";
  error_of(r, "or_filters");
}

// ---------------------------------------------------------------------------------------------
// filters: each operator, list and dict form

TEST(ListQuery, EqualsAndNotEquals) {
  const std::string status = col("status");
  expect_where(R"j([["status", "=", "Open"]])j", status + " = ?", {"Open"});
  expect_where(R"j({"status": "Open"})j", status + " = ?", {"Open"});
  expect_where(R"j({"status": ["=", "Open"]})j", status + " = ?", {"Open"});
  expect_where(R"j([["Service Order", "status", "=", "Open"]])j", status + " = ?", {"Open"});
  // A missing operator is "=" (get_filter).
  expect_where(R"j([["status", null, "Open"]])j", status + " = ?", {"Open"});
  expect_where(R"j([["status", "", "Open"]])j", status + " = ?", {"Open"});
  // A falsy value keeps IFNULL, so that NULL rows match "".
  expect_where(R"j([["status", "=", ""]])j", "IFNULL(" + status + ", '') = ?", {""});
  expect_where(R"j({"status": null})j", "IFNULL(" + status + ", '') = ?", {""});
  // != always wraps: NULL rows match != (Frappe's null handling).
  expect_where(R"j([["status", "!=", "Closed"]])j", "IFNULL(" + status + ", '') != ?", {"Closed"});
  expect_where(R"j({"status": ["!=", "Closed"]})j", "IFNULL(" + status + ", '') != ?", {"Closed"});
}

TEST(ListQuery, ComparisonsFollowFieldtypes) {
  // Numeric columns (Currency/Int/Check) are never NULL for Frappe: no IFNULL, values via flt().
  const std::string cost = col("estimated_cost");
  expect_where(R"j([["estimated_cost", "<", 100]])j", cost + " < ?", {"100.0"});
  expect_where(R"j([["estimated_cost", "<=", "1,500.5"]])j", cost + " <= ?", {"1500.5"});
  expect_where(R"j([["estimated_cost", ">", 2.5]])j", cost + " > ?", {"2.5"});
  expect_where(R"j({"estimated_cost": [">=", "abc"]})j", cost + " >= ?", {"0.0"});
  expect_where(R"j([["estimated_cost", "!=", 0]])j", cost + " != ?", {"0.0"});
  expect_where(R"j({"total_amount": true})j", col("total_amount") + " = ?", {"1.0"});

  // Date: IFNULL(col, '0001-01-01') except for > and >= (NULL is never greater).
  const std::string date = col("service_date");
  expect_where(R"j([["service_date", ">", "2026-01-01"]])j", date + " > ?", {"2026-01-01"});
  expect_where(R"j([["service_date", ">=", "2026-1-5"]])j", date + " >= ?", {"2026-01-05"});
  expect_where(R"j([["service_date", "<", "2026-01-05"]])j", "IFNULL(" + date + ", '0001-01-01') < ?", {"2026-01-05"});
  expect_where(R"j({"service_date": ["<=", "2026-01-05 10:30:00"]})j", "IFNULL(" + date + ", '0001-01-01') <= ?",
               {"2026-01-05"});
  expect_where(R"j([["service_date", "=", "2026-01-05"]])j", date + " = ?", {"2026-01-05"});
  expect_where(R"j([["service_date", "!=", "2026-01-05"]])j", "IFNULL(" + date + ", '0001-01-01') != ?",
               {"2026-01-05"});

  // creation / modified: compared as given, never NULL.
  expect_where(R"j([["modified", ">", "2026-01-01"]])j", col("modified") + " > ?", {"2026-01-01"});
  expect_where(R"j([["creation", "<=", "2026-01-01 10:00"]])j", col("creation") + " <= ?", {"2026-01-01 10:00"});
  expect_where(R"j({"modified": "2026-01-01 10:00:00"})j", col("modified") + " = ?", {"2026-01-01 10:00:00"});

  // Text compared with < keeps IFNULL(col, '').
  expect_where(R"j([["customer", "<", "M"]])j", "IFNULL(" + col("customer") + ", '') < ?", {"M"});
  // name is the primary key: never wrapped.
  expect_where(R"j([["name", "!=", "SO-1"]])j", col("name") + " != ?", {"SO-1"});
}

TEST(ListQuery, StandardNumericColumnsUseFrappesFallbacks) {
  // docstatus / idx have no DocField: strings compare as text, numbers through flt() with
  // fallback 0.
  const std::string ds = col("docstatus");
  expect_where(R"j([["docstatus", "=", 1]])j", ds + " = ?", {"1.0"});
  expect_where(R"j([["docstatus", "=", 0]])j", "IFNULL(" + ds + ", 0) = ?", {"0.0"});
  expect_where(R"j([["docstatus", "!=", 2]])j", "IFNULL(" + ds + ", 0) != ?", {"2.0"});
  expect_where(R"j([["docstatus", "<", "2"]])j", "IFNULL(" + ds + ", '') < ?", {"2"});
  expect_where(R"j({"idx": [">", 3]})j", "IFNULL(" + col("idx") + ", 0) > ?", {"3.0"});
}

TEST(ListQuery, LikeUsesTheValueAsGiven) {
  const std::string d = col("description");
  // No % added; a truthy like needs no IFNULL.
  expect_where(R"j([["description", "like", "%brake%"]])j", d + " LIKE ?", {"%brake%"});
  expect_where(R"j([["description", "LIKE", "brake"]])j", d + " LIKE ?", {"brake"});
  expect_where(R"j({"description": ["like", "brake_pad%"]})j", d + " LIKE ?", {"brake_pad%"});
  // Frappe doubles backslashes: a backslash matches itself, it escapes nothing.
  expect_where(R"j([["description", "like", "50\\%"]])j", d + " LIKE ?", {"50\\\\%"});
  expect_where(R"j([["description", "not like", "%brake%"]])j", "IFNULL(" + d + ", '') NOT LIKE ?", {"%brake%"});
  expect_where(R"j({"description": ["Not Like", "%x"]})j", "IFNULL(" + d + ", '') NOT LIKE ?", {"%x"});
  expect_where(R"j([["customer", "like", ""]])j", "IFNULL(" + col("customer") + ", '') LIKE ?", {""});
  expect_where(R"j([["modified", "like", "2026-01%"]])j", col("modified") + " LIKE ?", {"2026-01%"});
}

TEST(ListQuery, InAndNotIn) {
  const std::string s = col("status");
  expect_where(R"j([["status", "in", ["Open", "Closed"]]])j", s + " IN (?, ?)", {"Open", "Closed"});
  expect_where(R"j({"status": ["in", ["Open", "Closed"]]})j", s + " IN (?, ?)", {"Open", "Closed"});
  // Comma-separated string; values are stripped.
  expect_where(R"j([["status", "in", "Open, Closed ,Draft"]])j", s + " IN (?, ?, ?)", {"Open", "Closed", "Draft"});
  expect_where(R"j({"status": ["IN", "Open"]})j", s + " IN (?)", {"Open"});
  // An empty value among them (or no values at all) brings IFNULL back.
  expect_where(R"j([["status", "in", ["Open", ""]]])j", "IFNULL(" + s + ", '') IN (?, ?)", {"Open", ""});
  expect_where(R"j([["status", "in", ["Open", null]]])j", "IFNULL(" + s + ", '') IN (?, ?)", {"Open", ""});
  expect_where(R"j([["status", "in", []]])j", "IFNULL(" + s + ", '') IN (?)", {""});
  expect_where(R"j([["status", "in", ""]])j", "IFNULL(" + s + ", '') IN (?)", {""});
  // not in: NULL rows are "not in" anything.
  expect_where(R"j([["status", "not in", ["Closed", "Cancelled"]]])j", "IFNULL(" + s + ", '') NOT IN (?, ?)",
               {"Closed", "Cancelled"});
  expect_where(R"j({"status": ["not in", "Closed,Cancelled"]})j", "IFNULL(" + s + ", '') NOT IN (?, ?)",
               {"Closed", "Cancelled"});
  expect_where(R"j([["name", "not in", "SO-1,SO-2"]])j", col("name") + " NOT IN (?, ?)", {"SO-1", "SO-2"});
  // Values go through str(): numbers as Python prints them, booleans True/False.
  expect_where(R"j([["docstatus", "in", [0, 1.0, true]]])j", col("docstatus") + " IN (?, ?, ?)", {"0", "1.0", "True"});
}

TEST(ListQuery, BetweenOnDatesAndDatetimes) {
  // A Date column takes the dates.
  expect_where(R"j([["service_date", "between", ["2026-01-01", "2026-01-31"]]])j",
               col("service_date") + " BETWEEN ? AND ?", {"2026-01-01", "2026-01-31"});
  expect_where(R"j({"service_date": ["Between", ["2026-01-01 08:00", "2026-1-31"]]})j",
               col("service_date") + " BETWEEN ? AND ?", {"2026-01-01", "2026-01-31"});
  // A datetime column: a date-only bound covers its whole day (get_between_date_filter).
  expect_where(R"j([["creation", "between", ["2026-01-01", "2026-01-31"]]])j", col("creation") + " BETWEEN ? AND ?",
               {"2026-01-01 00:00:00.000000", "2026-01-31 23:59:59.999999"});
  // Only a value with a space is read as a datetime.
  expect_where(R"j([["modified", "between", ["2026-01-01 08:00", "2026-01-31T10:00:00"]]])j",
               col("modified") + " BETWEEN ? AND ?", {"2026-01-01 08:00:00.000000", "2026-01-31 23:59:59.999999"});
}

TEST(ListQuery, BetweenRefusesWhatFrappeCannotAnswer) {
  for (const char* f : {
           R"j([["estimated_cost", "between", [1, 5]]])j",  // Frappe splices the list: SQL error
           R"j([["status", "between", ["a", "b"]]])j",
           R"j([["service_date", "between", ["2026-01-01"]]])j",  // the missing bound would be today
           R"j([["service_date", "between", "2026-01-01,2026-01-31"]])j",
           R"j([["service_date", "between", ["2026-01-01", null]]])j",
           R"j([["service_date", "between", ["2026-02-30", "2026-03-01"]]])j",
           R"j([["service_date", "between", ["01-02-2026", "2026-03-01"]]])j",
       })
    error_of(with_filters(f), "filters");
}

TEST(ListQuery, IsSetAndIsNotSet) {
  const std::string t = col("technician_assigned");
  expect_where(R"j([["technician_assigned", "is", "set"]])j", t + " != ?", {""});
  expect_where(R"j({"technician_assigned": ["is", "set"]})j", t + " != ?", {""});
  expect_where(R"j([["technician_assigned", "is", "not set"]])j", "IFNULL(" + t + ", '') = ?", {""});
  expect_where(R"j({"technician_assigned": ["IS", "not set"]})j", "IFNULL(" + t + ", '') = ?", {""});
  expect_where(R"j([["service_date", "is", "not set"]])j", "IFNULL(" + col("service_date") + ", '') = ?", {""});
  for (const char* f : {R"j([["technician_assigned", "is", "Set"]])j", R"j([["technician_assigned", "is", "null"]])j",
                        R"j([["technician_assigned", "is", null]])j", R"j([["technician_assigned", "is", 1]])j"})
    error_of(with_filters(f), "filters");
}

TEST(ListQuery, FiltersAreAndedOrFiltersOredAndGrouped) {
  ListRequest r;
  r.filters = R"j([["status", "=", "Open"], ["service_date", ">=", "2026-01-01"]])j";
  r.or_filters = R"j([["customer", "=", "CUST-1"], ["vehicle", "like", "%ABC%"]])j";
  ListQuery q = build(r);
  EXPECT_EQ(q.sql, kSelectName + " WHERE " + col("status") + " = ? AND " + col("service_date") + " >= ? AND (" +
                       col("customer") + " = ? OR " + col("vehicle") + " LIKE ?)" + kDefaultOrder + kLimit);
  EXPECT_EQ(q.params, (Strings{"Open", "2026-01-01", "CUST-1", "%ABC%", "20", "0"}));

  ListRequest o;
  o.or_filters = R"j({"customer": "CUST-1", "vehicle": ["!=", "V-1"]})j";
  q = build(o);
  EXPECT_EQ(q.sql, kSelectName + " WHERE (" + col("customer") + " = ? OR IFNULL(" + col("vehicle") + ", '') != ?)" +
                       kDefaultOrder + kLimit);
  EXPECT_EQ(q.params, (Strings{"CUST-1", "V-1", "20", "0"}));
}

TEST(ListQuery, DictFormFollowsPythonDicts) {
  // A repeated key keeps its first position and its last value; extra list elements are ignored.
  expect_where(R"j({"status": "Open", "customer": "C", "status": "Closed"})j",
               col("status") + " = ? AND " + col("customer") + " = ?", {"Closed", "C"});
  expect_where(R"j({"status": ["=", "Open", "ignored"]})j", col("status") + " = ?", {"Open"});
}

TEST(ListQuery, RejectsBadFilters) {
  struct Case {
    const char* filters;
    const char* message_part;
  };
  for (const Case& c : std::vector<Case>{
           {R"j([["status", "==", "Open"]])j", "Operator must be one of"},
           {R"j([["status", "<>", "Open"]])j", "Operator must be one of"},
           {R"j([["status", "not  in", "Open"]])j", "Operator must be one of"},
           {R"j([["status", "regexp", ".*"]])j", "Operator must be one of"},
           {R"j([["status", 5, "Open"]])j", "Operator must be one of"},
           {R"j([["modified", "previous", "1 week"]])j", "Unsupported operator"},
           {R"j([["modified", "timespan", "this week"]])j", "Unsupported operator"},
           {R"j([["customer", "descendants of", "X"]])j", "Unsupported operator"},
           {R"j([["Service Order Item", "item_code", "=", "P-1"]])j", "filters on other doctypes are not supported"},
           {R"j([["", "status", "=", "Open"]])j", "filters on other doctypes are not supported"},
           {R"j([["nonexistent", "=", "x"]])j", "Field not permitted in query: nonexistent"},
           {R"j({"nonexistent": "x"})j", "Field not permitted in query: nonexistent"},
           {R"j([["parent", "=", "x"]])j", "Field not permitted in query: parent"},
           {R"j([["status; drop table x", "=", "x"]])j", "Invalid field name: status; drop table x"},
           {R"j([["ifnull(status,'')", "=", "x"]])j", "Invalid field name"},
           {R"j([["`tabService Order`.status", "=", "x"]])j", "Field not permitted in query"},
           {R"j([[5, "=", "x"]])j", "Invalid field name"},
           {R"j([["status"]])j", "Filter must have 4 values"},
           {R"j([["status", "Open"]])j", "Filter must have 4 values"},
           {R"j([["Service Order", "status", "=", "Open", "x"]])j", "Filter must have 4 values"},
           {R"j(["status", "=", "Open"])j", "Filter must be a list"},
           {R"j([{"status": "Open"}])j", "Filter must be a list"},
           {R"j({"status": ["="]})j", "must be [operator, value]"},
           {R"j({"status": []})j", "must be [operator, value]"},
           {R"j({"status": {"$ne": "x"}})j", "Invalid value"},
           {R"j([["status", "=", ["Open"]]])j", "Invalid value"},
           {R"j([["status", "in", 5]])j", "Invalid value"},
           {R"j([["status", "in", {"a": 1}]])j", "Invalid value"},
           {R"j([["status", "in", [["nested"]]]])j", "Invalid value"},
           {R"j([["service_date", "=", "tomorrow"]])j", "Invalid date"},
           {R"j([["service_date", "=", ""]])j", "Invalid date"},  // getdate("") is today
           {R"j([["service_date", "like", "2026-%"]])j", "Invalid date"},
           {R"j([["estimated_cost", "=", "nan"]])j", "Invalid number"},
           {"5", "must be a JSON list"},
           {"\"status\"", "must be a JSON list"},
           {"true", "must be a JSON list"},
       }) {
    std::string msg = error_of(with_filters(c.filters), "filters");
    EXPECT_NE(msg.find(c.message_part), std::string::npos) << c.filters << " -> " << msg;
  }
}

// ---------------------------------------------------------------------------------------------
// order_by and group_by

TEST(ListQuery, OrderByForms) {
  ListRequest r;
  r.order_by = " status asc,`tabService Order`.`modified` DESC , tabService Order.creation,`customer` Desc ";
  ListQuery q = build(r);
  EXPECT_EQ(q.sql, kSelectName + " ORDER BY " + col("status") + " ASC, " + col("modified") + " DESC, " +
                       col("creation") + ", " + col("customer") + " DESC" + kLimit);
  // An empty order_by (what frappe-js-sdk sends without orderBy) means no ORDER BY at all.
  r.order_by = "";
  EXPECT_EQ(build(r).sql, kSelectName + kLimit);
  r.order_by = "   ";
  EXPECT_EQ(build(r).sql, kSelectName + kLimit);
}

TEST(ListQuery, OrderByRefusesEverythingElse) {
  struct Case {
    const char* order_by;
    const char* message_part;
  };
  for (const Case& c : std::vector<Case>{
           {"name; drop table x", "Illegal SQL Query"},
           {"(select name from tabUser)", "Cannot use sub-query in order by"},
           {"name desc, (SELECT 1 FROM DUAL)", "Cannot use sub-query in order by"},
           {"modified\tdesc", "Illegal SQL Query"},
           {"name -- x", "Field not permitted in query"},
           {"unknown_column desc", "Field not permitted in query: unknown_column desc"},
           {"sleep(1)", "Field not permitted in query"},
           {"field(status, 'Open')", "Field not permitted in query"},
           {"name desc nulls first", "Field not permitted in query"},
           {"modified desc,", "Illegal SQL Query"},
           {"`tabUser`.`name` desc", "Please select atleast 1 column from"},
           {"`name", "Field not permitted in query"},
           {"name\xc3\xa4", "Illegal SQL Query"},
       }) {
    ListRequest r;
    r.order_by = c.order_by;
    std::string msg = error_of(r, "order_by");
    EXPECT_NE(msg.find(c.message_part), std::string::npos) << c.order_by << " -> " << msg;
  }
}

TEST(ListQuery, GroupByWithAggregatesAndAliasOrdering) {
  ListRequest r;
  r.fields = R"j(["status", "count(name) as total"])j";
  r.group_by = "status";
  r.order_by = "total desc";
  ListQuery q = build(r);
  EXPECT_EQ(q.sql, "SELECT " + col("status") + ", COUNT(" + col("name") + ") AS `total` FROM `tabService Order`" +
                       " GROUP BY " + col("status") + " ORDER BY `total` DESC" + kLimit);
  EXPECT_EQ(q.output_names, (Strings{"status", "total"}));

  // With group by, even a lone aggregate keeps the default order; group by takes a list.
  ListRequest g;
  g.fields = R"j(["count(*)"])j";
  g.group_by = " status , `tabService Order`.`customer`";
  EXPECT_EQ(build(g).sql, "SELECT COUNT(*) AS `count(*)` FROM `tabService Order` GROUP BY " + col("status") + ", " +
                              col("customer") + kDefaultOrder + kLimit);
  // An unaliased aggregate can be ordered by its own name (but not count(*): validate_order_by
  // refuses the '*').
  g.order_by = "`count(*)` desc";
  EXPECT_EQ(error_of(g, "order_by"), "Illegal SQL Query");
  g.fields = R"j(["count(name)"])j";
  g.order_by = "`count(name)` desc";
  EXPECT_EQ(build(g).sql, "SELECT COUNT(" + col("name") + ") AS `count(name)` FROM `tabService Order` GROUP BY " +
                              col("status") + ", " + col("customer") + " ORDER BY `count(name)` DESC" + kLimit);
  g.fields = R"j(["count(*)"])j";
  g.group_by = "";
  g.order_by.reset();
  EXPECT_EQ(build(g).sql, "SELECT COUNT(*) AS `count(*)` FROM `tabService Order`" + kLimit);
}

TEST(ListQuery, GroupByRefusesEverythingElse) {
  for (const char* g : {"status; drop table x", "count(name)", "unknown", "status desc", "(select 1 from x)",
                        "`tabUser`.`name`", "status,"}) {
    ListRequest r;
    r.group_by = g;
    error_of(r, "group_by");
  }
}

// ---------------------------------------------------------------------------------------------
// limits and as_dict

TEST(ListQuery, PageLengthAndStart) {
  ListRequest r;
  r.limit = "5";
  r.limit_start = "40";
  ListQuery q = build(r);
  EXPECT_EQ(q.params, (Strings{"5", "40"}));
  EXPECT_EQ(q.limit, 5u);
  EXPECT_FALSE(q.capped);

  // A present limit_page_length wins over limit (document_list's setdefault).
  r.limit_page_length = "7";
  EXPECT_EQ(build(r).params, (Strings{"7", "40"}));

  // An empty limit falls back to 20; whitespace and a leading + are tolerated.
  ListRequest e;
  e.limit = "";
  e.limit_start = " +3 ";
  EXPECT_EQ(build(e).params, (Strings{"20", "3"}));
}

TEST(ListQuery, AllRowsIsCappedAtMaxRows) {
  ListLimits limits;
  limits.max_rows = 500;
  for (auto set : std::vector<void (*)(ListRequest&)>{
           [](ListRequest& r) { r.limit_page_length = "0"; },
           [](ListRequest& r) { r.limit_page_length = ""; },  // cint("") is 0: no LIMIT in Frappe
           [](ListRequest& r) { r.limit = "0"; }, [](ListRequest& r) { r.limit = " "; },  // truthy, and cint(" ") is 0
       }) {
    ListRequest r;
    r.limit_start = "40";  // Frappe ignores the start without a page length
    set(r);
    auto q = build_list_query(service_order(), r, limits);
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(q->params, (Strings{"501", "0"}));
    EXPECT_EQ(q->limit, 500u);
    EXPECT_TRUE(q->capped);
  }
  // More than max_rows asked explicitly: also capped, start kept.
  ListRequest big;
  big.limit_page_length = "100000";
  big.limit_start = "10";
  auto q = build_list_query(service_order(), big, limits);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->params, (Strings{"501", "10"}));
  EXPECT_TRUE(q->capped);
  big.limit_page_length = "500";
  EXPECT_FALSE(build_list_query(service_order(), big, limits)->capped);
}

TEST(ListQuery, RejectsBadLimits) {
  for (const char* v : {"-1", "abc", "1.5", "1e3", "0x10", "99999999999999999999999", "5 5", "\xef\xbc\x95"}) {
    ListRequest a;
    a.limit_page_length = v;
    error_of(a, "limit_page_length");
    ListRequest b;
    b.limit = v;
    error_of(b, "limit");
    ListRequest c;
    c.limit_start = v;
    error_of(c, "limit_start");
  }
}

TEST(ListQuery, AsDictIsFrappesSbool) {
  for (const char* v : {"0", "false", "False", "FALSE", ""}) {
    ListRequest r;
    r.as_dict = v;
    EXPECT_FALSE(build(r).as_dict) << v;
  }
  for (const char* v : {"1", "true", "True", "yes", "anything"}) {
    ListRequest r;
    r.as_dict = v;
    EXPECT_TRUE(build(r).as_dict) << v;
  }
  ListRequest r;
  r.as_dict = "false";
  r.fields = R"j(["name", "status"])j";
  ListQuery q = build(r);
  EXPECT_EQ(q.output_names, (Strings{"name", "status"}));  // same names, rows as lists
}

// ---------------------------------------------------------------------------------------------
// Hostile input: always a ListError naming the parameter, or a query with every value bound

TEST(ListQuery, InvalidJsonNamesTheParameter) {
  for (const char* bad : {"[", "{", "[[\"status\",\"=\"", "not json", "[1,]", "{'status': 'Open'}", "NaN",
                          "[\"a\"] trailing", " ", "\xff\xfe", "[\"\xc3\x28\"]"}) {
    ListRequest f;
    f.fields = bad;
    error_of(f, "fields");
    error_of(with_filters(bad), "filters");
    ListRequest o;
    o.or_filters = bad;
    error_of(o, "or_filters");
  }
  // Deep nesting is refused by the parser, not by our stack.
  std::string deep(5000, '[');
  deep += std::string(5000, ']');
  error_of(with_filters(deep), "filters");
}

TEST(ListQuery, EnormousInputs) {
  const std::string huge(10 * 1024 * 1024, 'a');
  ListRequest f;
  f.fields = "[\"" + huge + "\"]";
  EXPECT_NE(error_of(f, "fields").find("too long"), std::string::npos);
  error_of(with_filters(R"j([["status","=",")j" + huge + "\"]]"), "filters");
  ListRequest o;
  o.order_by = huge;
  error_of(o, "order_by");
  ListRequest g;
  g.group_by = huge;
  error_of(g, "group_by");
  ListRequest l;
  l.limit = huge;
  std::string msg = error_of(l, "limit");
  EXPECT_LT(msg.size(), 400u);  // the message quotes the value, shortened

  // Past max_value_bytes: a value, an `in` element, a field name.
  const std::string big(5000, 'x');
  EXPECT_NE(error_of(with_filters(R"j([["status","=",")j" + big + "\"]]"), "filters").find("too long"),
            std::string::npos);
  error_of(with_filters(R"j([["status","in",["a",")j" + big + "\"]]]"), "filters");
  error_of(with_filters(R"j([["status","in","a,)j" + big + "\"]]"), "filters");
  ListRequest lf;
  lf.fields = "[\"" + big + "\"]";
  EXPECT_LT(error_of(lf, "fields").size(), 400u);
}

TEST(ListQuery, CountLimits) {
  ListLimits limits;
  limits.max_fields = 3;
  limits.max_filters = 2;
  limits.max_in_values = 3;

  ListRequest f;
  f.fields = R"j(["name", "status", "customer", "vehicle"])j";
  error_of(f, "fields", limits);
  f.fields = R"j(["name", "status", "customer"])j";
  EXPECT_TRUE(build_list_query(service_order(), f, limits).has_value());

  error_of(with_filters(R"j([["status","=","a"],["status","=","b"],["status","=","c"]])j"), "filters", limits);
  error_of(with_filters(R"j({"status":"a","customer":"b","vehicle":"c"})j"), "filters", limits);
  // filters and or_filters share the budget.
  ListRequest both = with_filters(R"j([["status","=","a"]])j");
  both.or_filters = R"j([["customer","=","b"],["vehicle","=","c"]])j";
  error_of(both, "or_filters", limits);

  EXPECT_NE(error_of(with_filters(R"j([["status","in",["a","b","c","d"]]])j"), "filters", limits).find("Too many"),
            std::string::npos);
  error_of(with_filters(R"j([["status","in","a,b,c,d"]])j"), "filters", limits);
  EXPECT_TRUE(
      build_list_query(service_order(), with_filters(R"j([["status","in",["a","b","c"]]])j"), limits).has_value());

  // Default limits: 51 filters, 1001 values.
  std::string many = "[";
  for (int i = 0; i < 51; ++i) many += std::string(i ? "," : "") + R"j(["status","=","x"])j";
  many += "]";
  error_of(with_filters(many), "filters");
  std::string values = R"j([["status","in",[)j";
  for (int i = 0; i < 1001; ++i) values += std::string(i ? "," : "") + "\"v\"";
  values += "]]]";
  error_of(with_filters(values), "filters");
}

TEST(ListQuery, ValuesAreAlwaysBoundNeverSpliced) {
  const std::string nasty = "x' OR '1'='1'; DROP TABLE `tabUser`; -- \" \\ %_";
  ListRequest r;
  r.filters = R"j([["customer", "=", "x' OR '1'='1'; DROP TABLE `tabUser`; -- \" \\ %_"],
                  ["description", "like", "a\u0000b"],
                  ["vehicle", "in", ["M\u00fcller", "\u6771\u4eac", "\ud83d\ude97"]]])j";
  ListQuery q = build(r);
  EXPECT_EQ(q.sql.find("DROP"), std::string::npos);
  EXPECT_EQ(q.sql.find("1'='1"), std::string::npos);
  EXPECT_EQ(q.params[0], nasty);
  EXPECT_EQ(q.params[1], std::string("a\0b", 3));
  EXPECT_EQ(q.params[2], "M\xc3\xbcller");
  EXPECT_EQ(q.params[3], "\xe6\x9d\xb1\xe4\xba\xac");
  EXPECT_EQ(q.params[4], "\xf0\x9f\x9a\x97");
  // Only Frappe's constant fallbacks appear as literals.
  std::string rest = q.sql;
  for (auto p = rest.find("''"); p != std::string::npos; p = rest.find("''")) rest.erase(p, 2);
  EXPECT_EQ(rest.find('\''), std::string::npos) << q.sql;
}

TEST(ListQuery, ValueErrorsAreThrownByValue) {
  auto q = build_list_query(service_order(), with_filters("not json"));
  ASSERT_FALSE(q.has_value());
  EXPECT_THROW((void)q.value(), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// canonical_list_request

TEST(CanonicalListRequest, SameMeaningSameText) {
  auto same = [](const ListRequest& a, const ListRequest& b) { EXPECT_EQ(canonical(a), canonical(b)); };

  ListRequest base;
  ListRequest spelled;
  spelled.fields = R"j([ "name" ])j";
  spelled.limit_page_length = "20";
  spelled.limit_start = "0";
  spelled.as_dict = "True";
  same(base, spelled);

  ListRequest empty_fields;
  empty_fields.fields = "[]";
  empty_fields.filters = "";
  empty_fields.or_filters = "{}";
  empty_fields.group_by = "  ";
  same(base, empty_fields);

  ListRequest a;
  a.filters = R"j({"status":"Open","customer":"CUST-1"})j";
  a.limit = "50";
  a.as_dict = "1";
  ListRequest b;
  b.filters = "{ \"customer\" : \"CUST-1\",\n \"status\": \"Open\" }";
  b.limit_page_length = "050";
  b.as_dict = "true";
  same(a, b);

  // A repeated key means its last value.
  ListRequest dup;
  dup.filters = R"j({"status":"Closed","customer":"CUST-1","status":"Open"})j";
  dup.limit = "50";
  same(a, dup);

  ListRequest o1;
  o1.order_by = "  modified   DESC ,name Asc";
  o1.group_by = " status ";
  ListRequest o2;
  o2.order_by = "modified desc, name asc";
  o2.group_by = "status";
  same(o1, o2);

  // Without a page length the start is ignored.
  ListRequest all1;
  all1.limit_page_length = "0";
  all1.limit_start = "30";
  ListRequest all2;
  all2.limit = "0";
  same(all1, all2);

  // as_dict: "false", "0" and "" all mean lists.
  ListRequest l1, l2, l3;
  l1.as_dict = "false";
  l2.as_dict = "0";
  l3.as_dict = "";
  same(l1, l2);
  same(l1, l3);
}

TEST(CanonicalListRequest, DifferentMeaningDifferentText) {
  std::vector<ListRequest> reqs(14);
  reqs[1].filters = R"j([["status","=","Open"]])j";
  reqs[2].filters = R"j([["status","=","Open "]])j";
  reqs[3].or_filters = R"j([["status","=","Open"]])j";
  reqs[4].filters = R"j([["status","=",1]])j";
  reqs[5].filters = R"j([["status","=",1.0]])j";
  reqs[6].filters = R"j([["status","=","Open"],["customer","=","C"]])j";
  reqs[7].filters = R"j([["customer","=","C"],["status","=","Open"]])j";
  reqs[8].order_by = "";  // no order at all, unlike the default
  reqs[9].order_by = "`tabService  Order`.`name`";
  reqs[10].order_by = "`tabService Order`.`name`";
  reqs[11].limit = "21";
  reqs[12].limit_start = "20";
  reqs[13].as_dict = "0";
  for (std::size_t i = 0; i < reqs.size(); ++i)
    for (std::size_t j = i + 1; j < reqs.size(); ++j)
      EXPECT_NE(canonical(reqs[i]), canonical(reqs[j])) << i << " vs " << j;

  ListRequest f1, f2;
  f1.fields = R"j(["name","status"])j";
  f2.fields = R"j(["status","name"])j";
  EXPECT_NE(canonical(f1), canonical(f2));
  // Strings that could look like the surrounding syntax stay inside their JSON string.
  ListRequest g1, g2;
  g1.group_by = R"j(status","limit":99,"x":")j";
  g2.group_by = "status";
  EXPECT_NE(canonical(g1), canonical(g2));
}

TEST(CanonicalListRequest, IsStableAndRejectsWhatBuildRejects) {
  ListRequest r;
  r.fields = R"j(["name","count(*) as n"])j";
  r.filters = R"j({"b":["in",["x","y"]],"a":{"z":1,"y":[1,2.5,null,true]}})j";
  r.order_by = "name DESC";
  EXPECT_EQ(canonical(r),
            R"j({"as_dict":1,"fields":["name","count(*) as n"],"filters":{"a":{"y":[1,2.5,null,true],"z":1},)j"
            R"j("b":["in",["x","y"]]},"limit":20,"limit_start":0,"order_by":"name desc"})j");
  EXPECT_EQ(canonical(r), canonical(r));

  for (auto set : std::vector<void (*)(ListRequest&)>{
           [](ListRequest& x) { x.fields = "[\"name\""; },
           [](ListRequest& x) { x.filters = "{"; },
           [](ListRequest& x) { x.or_filters = "nope"; },
           [](ListRequest& x) { x.limit = "-1"; },
           [](ListRequest& x) { x.limit_start = "x"; },
       }) {
    ListRequest x;
    set(x);
    EXPECT_FALSE(canonical_list_request(x).has_value());
  }
  ListRequest deep;
  deep.filters = std::string(100, '[') + std::string(100, ']');
  auto c = canonical_list_request(deep);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().parameter, "filters");
}
