// The order_by, group_by, limit_start, limit_page_length / limit and as_dict parameters.
#include <charconv>
#include <system_error>

#include "proxy/origin/list_internal.hpp"

namespace pitstop::origin::list {

// ---------------------------------------------------------------------------------------------
// order_by and group_by

std::vector<std::string_view> split_items(std::string_view s) {
  std::vector<std::string_view> items;
  bool in_tick = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '`') in_tick = !in_tick;
    if (!in_tick && s[i] == ',') {
      items.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  items.push_back(s.substr(start));
  return items;
}

namespace {

// validate_order_by_and_group_by's own checks, with its messages.
std::optional<ListError> frappe_clause_checks(std::string_view parameter, std::string_view text) {
  std::string lower = lower_ascii(text);
  if (lower.find("select") != std::string::npos && lower.find("from") != std::string::npos)
    return fail(parameter, "Cannot use sub-query in order by");
  // ORDER_GROUP_PATTERN: anything outside [a-z0-9-_ ,`'".()] is illegal.
  for (char c : lower) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ' ' || c == ',' ||
              c == '`' || c == '\'' || c == '"' || c == '.' || c == '(' || c == ')';
    if (!ok) return fail(parameter, "Illegal SQL Query");
  }
  return std::nullopt;
}

}  // namespace

std::pair<std::string_view, std::string_view> split_direction(std::string_view item) {
  bool in_tick = false;
  std::size_t last_space = std::string_view::npos;
  for (std::size_t i = 0; i < item.size(); ++i) {
    if (item[i] == '`') in_tick = !in_tick;
    if (!in_tick && is_ascii_space(item[i])) last_space = i;
  }
  if (last_space == std::string_view::npos) return {item, {}};
  std::string_view tail = item.substr(last_space + 1);
  std::string lower = lower_ascii(tail);
  if (lower == "asc" || lower == "desc") return {trim_ascii(item.substr(0, last_space)), tail};
  return {item, {}};
}

Result<std::string> parse_group_by(const ListRequest& r, const TableMeta& t, const ListLimits& limits) {
  if (!r.group_by) return ok({});
  std::string_view text = trim_ascii(*r.group_by);
  if (text.empty()) return ok({});
  if (text.size() > kMaxParamBytes) return fail("group_by", "group_by is too long");
  if (auto err = frappe_clause_checks("group_by", text)) return *err;
  auto items = split_items(text);
  if (items.size() > limits.max_fields)
    return fail("group_by", "Too many group_by columns: at most " + std::to_string(limits.max_fields));
  std::string sql;
  for (auto item : items) {
    ColumnRef ref = parse_column_ref(item, t);
    if (ref.status == ColumnRef::Status::other_doctype)
      return fail("group_by", "Please select atleast 1 column from " + quote(trim_ascii(item)) + " to sort/group");
    if (ref.status != ColumnRef::Status::ok)
      return fail("group_by", "Field not permitted in query: " + quote(trim_ascii(item)));
    if (!sql.empty()) sql += ", ";
    sql += column_sql(t, *ref.column);
  }
  return ok(std::move(sql));
}

Result<std::string> parse_order_by(const ListRequest& r, const TableMeta& t, const ListLimits& limits,
                                   const Fields& fields, bool grouped) {
  if (!r.order_by) {
    // DefaultOrderBy: the doctype's sort field (modified desc for these doctypes), except when
    // the only field is an aggregate without group by (set_order_by's
    // group_function_without_group_by).
    if (fields.items.size() == 1 && fields.items[0].aggregate && !grouped) return ok({});
    const ColumnMeta* modified = t.find("modified");
    if (!modified) return ok({});
    return ok(column_sql(t, *modified) + " DESC");
  }
  // An empty order_by (frappe-js-sdk sends one when no orderBy is given) is falsy for
  // set_order_by, and nothing replaces it: no ORDER BY at all.
  std::string_view text = trim_ascii(*r.order_by);
  if (text.empty()) return ok({});
  if (text.size() > kMaxParamBytes) return fail("order_by", "order_by is too long");
  if (auto err = frappe_clause_checks("order_by", text)) return *err;
  auto items = split_items(text);
  if (items.size() > limits.max_fields)
    return fail("order_by", "Too many order_by columns: at most " + std::to_string(limits.max_fields));
  std::string sql;
  for (auto raw_item : items) {
    std::string_view item = trim_ascii(raw_item);
    if (item.empty()) return fail("order_by", "Illegal SQL Query");
    auto [expr, direction] = split_direction(item);
    std::string target;
    ColumnRef ref = parse_column_ref(expr, t);
    // MariaDB resolves an unqualified ORDER BY name to a select alias first.
    if ((ref.status == ColumnRef::Status::ok || ref.status == ColumnRef::Status::unknown) && !ref.qualified) {
      for (const auto& f : fields.items)
        if (!f.alias.empty() && f.alias == ref.name) target = quote_ident(f.alias);
    }
    if (target.empty()) {
      if (ref.status == ColumnRef::Status::other_doctype)
        return fail("order_by", "Please select atleast 1 column from " + quote(expr) + " to sort/group");
      if (ref.status != ColumnRef::Status::ok) return fail("order_by", "Field not permitted in query: " + quote(item));
      target = column_sql(t, *ref.column);
    }
    if (!sql.empty()) sql += ", ";
    sql += target;
    if (!direction.empty()) sql += iequals(direction, "desc") ? " DESC" : " ASC";
  }
  return ok(std::move(sql));
}

// ---------------------------------------------------------------------------------------------
// limits and as_dict

namespace {

// cint() of a query parameter, refusing what cint would quietly turn into 0 (and with it "all
// rows"): only non-negative decimal integers.
Result<std::uint64_t> parse_count(std::string_view parameter, std::string_view text) {
  std::string_view s = trim_ascii(text);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  std::uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size())
    return fail(parameter, std::string(parameter) + " must be a non-negative integer, not " + quote(text));
  return n;
}

}  // namespace

// document_list: form_dict.setdefault("limit_page_length", form_dict.limit or
// form_dict.limit_page_length or 20). A present limit_page_length wins even when empty (and an
// empty one means no limit); an empty `limit` falls back to 20.
Result<PageLength> page_length(const ListRequest& r) {
  PageLength p;
  if (r.limit_page_length) {
    if (trim_ascii(*r.limit_page_length).empty()) {
      p.value = 0;
      return p;
    }
    auto n = parse_count("limit_page_length", *r.limit_page_length);
    if (!n) return n.error();
    p.value = *n;
    return p;
  }
  if (r.limit && !r.limit->empty()) {
    p.parameter = "limit";
    // " " is truthy, so it becomes limit_page_length, and cint(" ") is 0: all rows.
    if (trim_ascii(*r.limit).empty()) {
      p.value = 0;
      return p;
    }
    auto n = parse_count("limit", *r.limit);
    if (!n) return n.error();
    p.value = *n;
  }
  return p;
}

Result<std::uint64_t> limit_start(const ListRequest& r) {
  if (!r.limit_start || trim_ascii(*r.limit_start).empty()) return std::uint64_t{0};  // cint("") is 0
  return parse_count("limit_start", *r.limit_start);
}

// frappe.utils.data.sbool, then client.get_list's `as_list = not as_dict`: "true"/"1" and
// "false"/"0" (any case) are booleans; any other string stays a string, true unless empty.
bool as_dict_value(const ListRequest& r) {
  if (!r.as_dict) return true;
  std::string v = lower_ascii(*r.as_dict);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  return !r.as_dict->empty();
}

}  // namespace pitstop::origin::list
