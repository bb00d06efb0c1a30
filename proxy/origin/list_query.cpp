// Frappe's list API read the way Frappe 15 reads it. The sources this mirrors, so that the next
// reader can check a behaviour against them:
//   frappe/api/v1.py        document_list: json.loads(fields), limit_page_length defaulting to
//                           `limit` or 20 (setdefault: a present limit_page_length wins), order_by
//                           defaulting to DefaultOrderBy, as_dict through sbool.
//   frappe/client.py        get_list: as_list = not as_dict; validate_args from reportview.
//   frappe/desk/reportview  validate_fields / extract_fieldname / validate_filters:
//                           "Field not permitted in query: x".
//   frappe/utils/data.py    get_filter (operator list, 3/4-element lists), make_filter_tuple
//                           (dict form), sanitize_column ("Invalid field name"), sbool.
//   frappe/model/db_query   parse_args, set_optional_columns, prepare_filter_condition (the
//                           IFNULL fallbacks), set_order_by, validate_order_by_and_group_by,
//                           add_limit, get_between_date_filter.
// Where Frappe splices text into its SQL we bind a parameter instead; where Frappe would fail with
// a database error (or answer something time-dependent) we answer a ListError.
//
// The parts live in list_fields.cpp (column references, fields), list_filters.cpp (filters,
// or_filters), list_order.cpp (order_by, group_by, limits, as_dict), list_canonical.cpp (the
// cache key's text) and list_json.cpp (parameter JSON); this file assembles the SELECT.
#include "proxy/origin/list_query.hpp"

#include <limits>
#include <stdexcept>
#include <utility>

#include "proxy/origin/list_internal.hpp"

namespace pitstop::origin {
namespace list {
namespace {

void select_clause(ListQuery& q, Fields& fields, const TableMeta& table) {
  q.sql = "SELECT ";
  bool first = true;
  for (auto& item : fields.items) {
    if (!first) q.sql += ", ";
    first = false;
    q.sql += item.sql;
    for (auto& n : item.names) q.output_names.push_back(std::move(n));
  }
  q.sql += " FROM " + quote_ident(table.table);
}

// build_conditions / prepare_args: filters ANDed, or_filters ORed as one more ANDed group, and
// what the reader may see (build_match_conditions) ANDed last.
void where_clause(ListQuery& q, std::vector<Condition>& filters, std::vector<Condition>& or_filters, const RowScope* scope) {
  std::vector<std::string> where;
  for (auto& c : filters) {
    where.push_back(std::move(c.sql));
    for (auto& p : c.params) q.params.push_back(std::move(p));
  }
  if (!or_filters.empty()) {
    std::string group = "(";
    for (std::size_t i = 0; i < or_filters.size(); ++i) {
      auto& c = or_filters[i];
      if (i) group += " OR ";
      group += c.sql;
      for (auto& p : c.params) q.params.push_back(std::move(p));
    }
    group += ")";
    where.push_back(std::move(group));
  }
  if (scope && !scope->sql.empty()) {
    where.push_back("(" + scope->sql + ")");
    for (const auto& p : scope->params) q.params.push_back(p);
  }
  for (std::size_t i = 0; i < where.size(); ++i) q.sql += (i ? " AND " : " WHERE ") + where[i];
}

// add_limit: no page length means no LIMIT (and no OFFSET either). We never run an unbounded
// query: fetch one row more than max_rows so the caller can tell "too many" from "all".
void limit_clause(ListQuery& q, std::uint64_t start, const PageLength& page, const ListLimits& limits) {
  std::uint64_t offset = start;
  std::uint64_t sql_limit = page.value;
  const std::uint64_t max_rows = limits.max_rows;
  if (page.value == 0 || page.value > max_rows) {
    if (page.value == 0) offset = 0;
    q.limit = static_cast<std::size_t>(max_rows);
    q.capped = true;
    sql_limit = max_rows == std::numeric_limits<std::uint64_t>::max() ? max_rows : max_rows + 1;
  } else {
    q.limit = static_cast<std::size_t>(page.value);
  }
  q.sql += " LIMIT ? OFFSET ?";
  q.params.push_back(std::to_string(sql_limit));
  q.params.push_back(std::to_string(offset));
}

}  // namespace
}  // namespace list

boost::system::result<ListQuery, ListError> build_list_query(const TableMeta& table, const ListRequest& request,
                                                             const ListLimits& limits, const RowScope* scope) {
  using namespace list;
  // reportview.validate_args checks fields, then filters, then or_filters; DatabaseQuery then
  // group_by / order_by; the limits only ever failed in SQL.
  auto fields = parse_fields(request, table, limits);
  if (!fields) return fields.error();

  FilterCounter counter;
  auto filters = parse_filters("filters", request.filters, table, limits, counter);
  if (!filters) return filters.error();
  auto or_filters = parse_filters("or_filters", request.or_filters, table, limits, counter);
  if (!or_filters) return or_filters.error();

  auto group_by = parse_group_by(request, table, limits);
  if (!group_by) return group_by.error();
  auto order_by = parse_order_by(request, table, limits, *fields, !group_by->empty());
  if (!order_by) return order_by.error();

  auto start = limit_start(request);
  if (!start) return start.error();
  auto page = page_length(request);
  if (!page) return page.error();

  ListQuery q;
  q.as_dict = as_dict_value(request);
  if (fields->items.empty()) {
    q.nothing_visible = true;  // Frappe answers [] when every field asked for is above the reader's level
    return q;
  }
  select_clause(q, *fields, table);
  where_clause(q, *filters, *or_filters, scope);
  if (!group_by->empty()) q.sql += " GROUP BY " + *group_by;
  if (!order_by->empty()) q.sql += " ORDER BY " + *order_by;
  limit_clause(q, *start, *page, limits);
  return q;
}

void throw_exception_from_error(const ListError& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

}  // namespace pitstop::origin
