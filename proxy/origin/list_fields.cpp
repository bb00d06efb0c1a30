// The `fields` parameter, and the column references fields, group_by and order_by name.
#include <simdjson.h>

#include "proxy/origin/list_internal.hpp"

namespace pitstop::origin::list {

namespace dom = simdjson::dom;

// ---------------------------------------------------------------------------------------------
// Column references: name, `name`, `tabDocType`.`name`, tabDocType.name

namespace {

// frappe.model: default_fields, optional_fields, child_table_fields. Frappe has no DocField for
// these, so prepare_filter_condition applies none of its per-fieldtype rules to them.
constexpr std::array<std::string_view, 16> kStandardFields = {
    "doctype",    "name",      "owner",   "creation",  "modified", "modified_by", "docstatus",   "idx",
    "_user_tags", "_comments", "_assign", "_liked_by", "_seen",    "parent",      "parentfield", "parenttype"};

bool is_bare_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// One identifier part at s[i]: `quoted` (no backtick inside) or bare. A bare qualifier may hold
// spaces and hyphens (doctype names do); a bare column may not.
bool read_ident(std::string_view s, std::size_t& i, bool qualifier, std::string& out) {
  if (i < s.size() && s[i] == '`') {
    auto end = s.find('`', i + 1);
    if (end == std::string_view::npos || end == i + 1) return false;
    out.assign(s.substr(i + 1, end - i - 1));
    i = end + 1;
    // "``" inside would be an escaped backtick; no Frappe name has one.
    if (i < s.size() && s[i] == '`') return false;
    for (char c : out)
      if (static_cast<unsigned char>(c) < 0x20) return false;
    return true;
  }
  std::size_t start = i;
  while (i < s.size()) {
    char c = s[i];
    if (is_bare_ident_char(c) || (qualifier && (c == ' ' || c == '-'))) {
      ++i;
      continue;
    }
    break;
  }
  if (i == start) return false;
  out.assign(s.substr(start, i - start));
  return true;
}

}  // namespace

FieldKind field_kind(const ColumnMeta& c) {
  if (one_of(c.name, kStandardFields)) return FieldKind::standard;
  std::string t = lower_ascii(c.data_type);
  if (auto p = t.find('('); p != std::string::npos) t.resize(p);
  t = std::string(trim_ascii(t));
  if (t == "date") return FieldKind::date;
  if (t == "datetime" || t == "timestamp") return FieldKind::datetime;
  if (t == "time") return FieldKind::time;
  if (t == "int" || t == "integer" || t == "tinyint" || t == "smallint" || t == "mediumint" || t == "bigint" ||
      t == "decimal" || t == "numeric" || t == "float" || t == "double" || t == "real" || t == "bit")
    return FieldKind::numeric;
  return FieldKind::text;
}

ColumnRef parse_column_ref(std::string_view text, const TableMeta& t) {
  ColumnRef ref;
  std::string_view s = trim_ascii(text);
  std::size_t i = 0;
  std::string first;
  // A bare first part followed by '.' is a qualifier (it may contain spaces: tabService Order).
  bool bare_qualifier = !s.empty() && s[0] != '`' && s.find('.') != std::string_view::npos;
  if (!read_ident(s, i, bare_qualifier, first)) return ref;
  if (i == s.size()) {
    ref.name = first;
  } else if (s[i] == '.') {
    ++i;
    std::string second;
    if (!read_ident(s, i, false, second) || i != s.size()) return ref;
    ref.qualified = true;
    ref.name = second;
    if (first != t.table) {
      ref.status = ColumnRef::Status::other_doctype;
      return ref;
    }
  } else {
    return ref;
  }
  ref.column = t.find(ref.name);
  ref.status = ref.column ? ColumnRef::Status::ok : ColumnRef::Status::unknown;
  return ref;
}

// ---------------------------------------------------------------------------------------------
// fields

namespace {

// MariaDB refuses longer column aliases.
constexpr std::size_t kMaxAliasBytes = 256;

ListError field_error(std::string_view field) {
  return fail("fields", "Field not permitted in query: " + quote(field));
}

// Splits "expr AS alias" (any case, any whitespace) outside backticks and parentheses.
std::pair<std::string_view, std::optional<std::string_view>> split_alias(std::string_view s) {
  bool in_tick = false;
  int depth = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '`') in_tick = !in_tick;
    if (in_tick) continue;
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth != 0 || !is_ascii_space(c)) continue;
    std::size_t j = i;
    while (j < s.size() && is_ascii_space(s[j])) ++j;
    if (j + 2 < s.size() && (s[j] == 'a' || s[j] == 'A') && (s[j + 1] == 's' || s[j + 1] == 'S') &&
        is_ascii_space(s[j + 2]))
      return {trim_ascii(s.substr(0, i)), trim_ascii(s.substr(j + 2))};
  }
  return {s, std::nullopt};
}

std::optional<std::string> parse_alias(std::string_view a) {
  if (a.empty()) return std::nullopt;
  std::string out;
  if (a.front() == '`') {
    if (a.size() < 3 || a.back() != '`') return std::nullopt;
    out.assign(a.substr(1, a.size() - 2));
    for (char c : out)
      if (c == '`' || static_cast<unsigned char>(c) < 0x20) return std::nullopt;
  } else {
    for (char c : a)
      if (!is_bare_ident_char(c) && c != '$') return std::nullopt;
    out.assign(a);
  }
  if (out.size() > kMaxAliasBytes || trim_ascii(out).empty()) return std::nullopt;
  return out;
}

// A field above the reader's level: dropped, as Frappe's get_permitted_fields drops it. Marked
// (an empty item with the flag) so that a list left with no field answers no rows.
Result<std::optional<SelectItem>> hidden_field() {
  SelectItem item;
  item.hidden = true;
  return std::optional<SelectItem>(std::move(item));
}

// Result: a select item, or nullopt when Frappe drops the field (an optional column this table
// does not have: set_optional_columns).
Result<std::optional<SelectItem>> parse_field(std::string_view field, const TableMeta& t, const ListLimits& limits) {
  if (field.size() > limits.max_value_bytes) return field_error(field);
  std::string_view s = trim_ascii(field);
  // reportview.extract_fieldname refuses these outright.
  if (s.empty() || s.find(',') != std::string_view::npos || s.find("/*") != std::string_view::npos ||
      s.find('#') != std::string_view::npos)
    return field_error(field);
  auto [expr, alias_text] = split_alias(s);
  std::optional<std::string> alias;
  if (alias_text) {
    alias = parse_alias(*alias_text);
    if (!alias) return field_error(field);
  }
  SelectItem item;
  if (expr == "*") {
    if (alias) return field_error(field);
    for (const auto& c : t.columns) {
      if (c.hidden) continue;
      if (!item.sql.empty()) item.sql += ", ";
      item.sql += column_sql(t, c);
      item.names.push_back(c.name);
    }
    return std::optional<SelectItem>(std::move(item));
  }

  // count/sum/avg/min/max of one column (count also of *).
  auto paren = expr.find('(');
  if (paren != std::string_view::npos) {
    std::string func = lower_ascii(trim_ascii(expr.substr(0, paren)));
    if ((func != "count" && func != "sum" && func != "avg" && func != "min" && func != "max") || expr.back() != ')')
      return field_error(field);
    std::string_view inner = trim_ascii(expr.substr(paren + 1, expr.size() - paren - 2));
    std::string upper = func;
    for (char& c : upper) c = static_cast<char>(c - 'a' + 'A');
    if (inner == "*") {
      if (func != "count") return field_error(field);
      item.sql = upper + "(*)";
    } else {
      ColumnRef ref = parse_column_ref(inner, t);
      if (ref.status == ColumnRef::Status::unknown && !ref.qualified && one_of(ref.name, kOptionalFields))
        return std::optional<SelectItem>();
      if (ref.status == ColumnRef::Status::other_doctype)
        return fail("fields", "Fields of other doctypes are not supported: " + quote(field));
      if (ref.status != ColumnRef::Status::ok) return field_error(field);
      if (ref.column->hidden) return hidden_field();
      item.sql = upper + "(" + column_sql(t, *ref.column) + ")";
    }
    item.aggregate = true;
    // Without an alias MariaDB names the column after the expression as written, which is the
    // key Frappe returns ("count(name)"); the explicit alias keeps that key whatever we emit.
    item.alias = alias ? *alias : std::string(expr);
    if (item.alias.size() > kMaxAliasBytes) return field_error(field);
    item.sql += " AS " + quote_ident(item.alias);
    item.names.push_back(item.alias);
    return std::optional<SelectItem>(std::move(item));
  }

  ColumnRef ref = parse_column_ref(expr, t);
  if (ref.status == ColumnRef::Status::unknown && !ref.qualified && one_of(ref.name, kOptionalFields))
    return std::optional<SelectItem>();
  if (ref.status == ColumnRef::Status::other_doctype)
    return fail("fields", "Fields of other doctypes are not supported: " + quote(field));
  if (ref.status != ColumnRef::Status::ok) return field_error(field);
  if (ref.column->hidden) return hidden_field();
  item.sql = column_sql(t, *ref.column);
  if (alias) {
    item.sql += " AS " + quote_ident(*alias);
    item.alias = *alias;
    item.names.push_back(*alias);
  } else {
    item.names.push_back(ref.column->name);
  }
  return std::optional<SelectItem>(std::move(item));
}

}  // namespace

Result<Fields> parse_fields(const ListRequest& r, const TableMeta& t, const ListLimits& limits) {
  Fields out;
  std::vector<std::string> raw;
  // document_list: `if form_dict.get("fields")` - an empty string is no fields at all.
  if (r.fields && !r.fields->empty()) {
    auto root = parse_json("fields", *r.fields);
    if (!root) return root.error();
    dom::element e = *root;
    if (!json_falsy(e)) {
      if (e.type() != dom::element_type::ARRAY) return fail("fields", "fields must be a JSON list of field names");
      dom::array a = e.get_array().value_unsafe();
      if (a.size() > limits.max_fields)
        return fail("fields", "Too many fields: at most " + std::to_string(limits.max_fields));
      for (dom::element f : a) {
        if (f.type() != dom::element_type::STRING)
          return fail("fields", "Field not permitted in query: " + quote(json_text(f)));
        raw.emplace_back(f.get_string().value_unsafe());
      }
    }
  }
  if (raw.empty()) {
    // DatabaseQuery.execute: no fields means `tab<DocType>`.`name`.
    raw.emplace_back("name");
  } else {
    out.explicit_fields = true;
  }
  for (const auto& f : raw) {
    auto item = parse_field(f, t, limits);
    if (!item) return item.error();
    if (*item && (*item)->hidden) out.hidden_dropped = true;
    else if (*item && !(*item)->sql.empty()) out.items.push_back(std::move(**item));
  }
  if (out.items.empty() && !out.hidden_dropped) return fail("fields", "No fields left to select");
  return out;
}

}  // namespace pitstop::origin::list
