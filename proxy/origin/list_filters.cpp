// The `filters` and `or_filters` parameters: each filter checked against the table and turned
// into a bound condition, as prepare_filter_condition would splice it.
#include <simdjson.h>

#include "proxy/origin/list_internal.hpp"

namespace pitstop::origin::list {

namespace dom = simdjson::dom;

// ---------------------------------------------------------------------------------------------
// filters and or_filters

namespace {

// Frappe's fallbacks for IFNULL(column, fallback), spliced as constants (they never come from the
// request). FallBackDateTimeStr is frappe.database.utils.FallBackDateTimeStr.
constexpr std::string_view kFallbackText = "''";
constexpr std::string_view kFallbackNumber = "0";
constexpr std::string_view kFallbackDate = "'0001-01-01'";
constexpr std::string_view kFallbackDateTime = "'0001-01-01 00:00:00.000000'";
constexpr std::string_view kFallbackTime = "'00:00:00'";

// get_filter's valid_operators, in Frappe's order (the error message lists them so).
constexpr std::string_view kOperatorList =
    "=, !=, >, <, >=, <=, like, not like, in, not in, is, between, timespan, previous, next, ancestors of, "
    "descendants of, not ancestors of, not descendants of, descendants of (inclusive)";
constexpr std::array<std::string_view, 11> kSupportedOperators = {
    "=", "!=", ">", "<", ">=", "<=", "like", "not like", "in", "not in", "between"};
// Valid for Frappe but not answerable here: they depend on today's date (timespan, previous,
// next) or on a tree stored in another table (the nested-set operators).
constexpr std::array<std::string_view, 8> kUnsupportedOperators = {"timespan",
                                                                   "previous",
                                                                   "next",
                                                                   "ancestors of",
                                                                   "descendants of",
                                                                   "not ancestors of",
                                                                   "not descendants of",
                                                                   "descendants of (inclusive)"};

// A comparison's bound value and the IFNULL fallback of its type.
struct Operand {
  std::string param;
  std::string_view fallback = kFallbackText;
};

class FilterBuilder {
 public:
  FilterBuilder(const TableMeta& t, const ListLimits& limits, std::string_view parameter)
      : t_(t), limits_(limits), parameter_(parameter) {}

  // nullopt: Frappe drops the filter (an optional column the table lacks, in `filters`).
  Result<std::optional<Condition>> build(const Val* doctype, const Val& field, const Val& op, const Val& value) {
    if (doctype && !(doctype->is_string() && doctype->s == t_.doctype))
      return error("filters on other doctypes are not supported");
    if (!field.is_string()) return error("Invalid field name: " + shown(field));
    const std::string& name = field.s;
    // frappe.utils.data.sanitize_column
    if (name.find_first_of(",'();") != std::string::npos) return error("Invalid field name: " + quote(name));
    const ColumnMeta* column = t_.find(name);
    if (!column) {
      // set_optional_columns removes these from `filters` (not from `or_filters`).
      if (parameter_ == "filters" && one_of(name, kOptionalFields)) return std::optional<Condition>();
      return error("Field not permitted in query: " + quote(name));
    }

    std::string oper;
    if (op.kind == Val::Kind::null || (op.is_string() && op.s.empty())) {
      oper = "=";  // get_filter: a missing operator is "="
    } else if (op.is_string()) {
      oper = lower_ascii(op.s);
    } else {
      return error("Operator must be one of " + std::string(kOperatorList));
    }
    if (one_of(oper, kUnsupportedOperators)) return error("Unsupported operator: " + quote(oper));
    if (!one_of(oper, kSupportedOperators) && oper != "is")
      return error("Operator must be one of " + std::string(kOperatorList));

    if (oper == "in" || oper == "not in") return in_condition(*column, oper, value);
    return scalar_condition(*column, oper, value);
  }

 private:
  ListError error(std::string message) const { return fail(parameter_, std::move(message)); }

  ListError too_long(const ColumnMeta& c) const {
    return error("Filter value too long for " + quote(c.name) + ": at most " + std::to_string(limits_.max_value_bytes) +
                 " bytes");
  }

  Result<std::string> checked(std::string s, const ColumnMeta& c) const {
    if (s.size() > limits_.max_value_bytes) return too_long(c);
    return ok(std::move(s));
  }

  // prepare_filter_condition, `in` / `not in` branch.
  Result<std::optional<Condition>> in_condition(const ColumnMeta& c, const std::string& oper, const Val& value) {
    bool can_be_null = c.name != "name" && c.name != "creation" && c.name != "modified";
    std::vector<std::string> values;
    if (!value.truthy()) {
      // `f.value or ""` split on "," is [""].
      values.emplace_back();
    } else if (value.is_string()) {
      if (value.s.size() > limits_.max_value_bytes) return too_long(c);
      std::string_view rest = value.s;
      while (true) {
        auto comma = rest.find(',');
        values.emplace_back(py_strip(rest.substr(0, comma)));
        if (values.size() > limits_.max_in_values) return too_many(c);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      // any(v is None or v == "" for v in "a,b") looks at characters: never true.
      if (oper == "in") can_be_null = false;
    } else if (value.kind == Val::Kind::array) {
      if (!value.copied && value.size > limits_.max_in_values) return too_many(c);
      if (!value.copied) return error("Invalid value for " + quote(c.name) + ": " + shown(value));
      bool has_empty = false;
      for (const auto& v : value.items) {
        if (!v.is_scalar()) return error("Invalid value for " + quote(c.name) + ": " + shown(value));
        if (v.kind == Val::Kind::null || (v.is_string() && v.s.empty())) has_empty = true;
        auto s = checked(std::string(py_strip(py_str(v))), c);
        if (!s) return s.error();
        values.push_back(std::move(*s));
      }
      if (oper == "in") can_be_null = can_be_null && has_empty;
    } else {
      // Frappe iterates the value: a number or an object is an error there.
      return error("Invalid value for " + quote(c.name) + ": " + shown(value));
    }

    Condition cond;
    std::string col = column_sql(t_, c);
    cond.sql = can_be_null ? "IFNULL(" + col + ", " + std::string(kFallbackText) + ")" : col;
    cond.sql += oper == "in" ? " IN (" : " NOT IN (";
    for (std::size_t i = 0; i < values.size(); ++i) cond.sql += i ? ", ?" : "?";
    cond.sql += ")";
    cond.params = std::move(values);
    return std::optional<Condition>(std::move(cond));
  }

  ListError too_many(const ColumnMeta& c) const {
    return error("Too many values for " + quote(c.name) + ": at most " + std::to_string(limits_.max_in_values));
  }

  Result<std::optional<Condition>> between_condition(const ColumnMeta& c, FieldKind kind, const Val& value) {
    // get_between_date_filter fills a missing bound with today: refused, the answer would change
    // at midnight.
    if (value.kind != Val::Kind::array || !value.copied || value.items.size() != 2 || !value.items[0].is_string() ||
        !value.items[1].is_string())
      return error("between needs a list of two dates for " + quote(c.name) + ": " + shown(value));
    Condition cond;
    for (int bound = 0; bound < 2; ++bound) {
      const std::string& text = value.items[bound].s;
      if (text.size() > limits_.max_value_bytes) return too_long(c);
      auto dt = parse_datetime(text);
      if (!dt) return error("Invalid date for " + quote(c.name) + ": " + quote(text));
      if (kind == FieldKind::date) {
        cond.params.push_back(format_date(*dt));
      } else {
        // _convert_type_for_between_filters: only a value with a space is read as a datetime;
        // a date (even "2026-01-31T10:00") covers the whole day.
        if (py_strip(text).find(' ') == std::string_view::npos) {
          dt->has_time = false;
          dt->hour = bound ? 23 : 0;
          dt->minute = bound ? 59 : 0;
          dt->second = bound ? 59 : 0;
          dt->micro = bound ? 999999 : 0;
        }
        cond.params.push_back(format_datetime(*dt));
      }
    }
    // Between never needs IFNULL: a NULL column is between nothing.
    cond.sql = column_sql(t_, c) + " BETWEEN ? AND ?";
    return std::optional<Condition>(std::move(cond));
  }

  // prepare_filter_condition for every operator but in / not in.
  Result<std::optional<Condition>> scalar_condition(const ColumnMeta& c, std::string oper, const Val& value) {
    const FieldKind kind = field_kind(c);
    const bool stamp = c.name == "creation" || c.name == "modified";
    if (oper == "between") {
      if (stamp || kind == FieldKind::date || kind == FieldKind::datetime)
        return between_condition(c, stamp ? FieldKind::datetime : kind, value);
      // Frappe splices the list itself for other fieldtypes: an SQL error there.
      return error("between is only supported on date and datetime fields, not " + quote(c.name));
    }
    // primary key is never nullable, modified / creation always present
    bool can_be_null = c.name != "name" && !stamp;
    if (kind == FieldKind::numeric) can_be_null = false;
    if (!value.is_scalar()) return error("Invalid value for " + quote(c.name) + ": " + shown(value));
    // Null values can never be greater than any non-null value.
    if ((oper == ">" || oper == ">=") && (stamp || kind == FieldKind::date || kind == FieldKind::datetime))
      can_be_null = false;

    Operand operand;
    bool wrapped = false;  // the column is already IFNULL(...)
    std::string col = column_sql(t_, c);

    if ((oper == ">" || oper == "<" || oper == ">=" || oper == "<=") && stamp) {
      operand.param = py_str(value);  // cstr(f.value), compared as given
      can_be_null = false;
      operand.fallback = kFallbackDateTime;
    } else if (oper == "is") {
      if (value.is_string() && value.s == "set") {
        oper = "!=";
        can_be_null = false;  // NULL != '' is not true either
      } else if (value.is_string() && value.s == "not set") {
        oper = "=";
        can_be_null = true;
        col = "IFNULL(" + col + ", " + std::string(kFallbackText) + ")";
        wrapped = true;
      } else {
        return error("is needs \"set\" or \"not set\" for " + quote(c.name) + ": " + shown(value));
      }
    } else {
      auto typed = typed_operand(c, kind, oper, value);
      if (!typed) return typed.error();
      operand = std::move(*typed);
    }
    auto checked_param = checked(std::move(operand.param), c);
    if (!checked_param) return checked_param.error();

    Condition cond;
    std::string op_sql = oper == "like" ? "LIKE" : oper == "not like" ? "NOT LIKE" : oper;
    bool plain = !can_be_null || (value.truthy() && (oper == "=" || oper == "like")) || wrapped;
    if (plain)
      cond.sql = col + " " + op_sql + " ?";
    else
      cond.sql = "IFNULL(" + col + ", " + std::string(operand.fallback) + ") " + op_sql + " ?";
    cond.params.push_back(std::move(*checked_param));
    return std::optional<Condition>(std::move(cond));
  }

  // The value of a comparison as Frappe converts it for the column's type (scalar_condition has
  // dealt with between, is, and creation / modified compared by order).
  Result<Operand> typed_operand(const ColumnMeta& c, FieldKind kind, const std::string& oper, const Val& value) const {
    const bool like = oper == "like" || oper == "not like";
    Operand out;
    if (kind == FieldKind::date) {
      // frappe.db.format_date(getdate(value)); getdate() of an empty value is today: refused.
      if (!value.is_string()) return error("Invalid date for " + quote(c.name) + ": " + shown(value));
      auto dt = parse_datetime(value.s);
      if (!dt) return error("Invalid date for " + quote(c.name) + ": " + quote(value.s));
      out.param = format_date(*dt);
      out.fallback = kFallbackDate;
    } else if (kind == FieldKind::datetime) {
      if (!value.truthy()) {
        out.param = std::string(kFallbackDateTime.substr(1, kFallbackDateTime.size() - 2));
      } else {
        if (!value.is_string()) return error("Invalid date for " + quote(c.name) + ": " + shown(value));
        auto dt = parse_datetime(value.s);
        if (!dt) return error("Invalid date for " + quote(c.name) + ": " + quote(value.s));
        out.param = format_datetime(*dt);
      }
      out.fallback = kFallbackDateTime;
    } else if (kind == FieldKind::time) {
      std::optional<std::string> t = value.is_string() ? format_time(value.s) : std::nullopt;
      if (!t) return error("Invalid time for " + quote(c.name) + ": " + shown(value));
      out.param = *t;
      out.fallback = kFallbackTime;
    } else if (like || (value.is_string() && kind != FieldKind::numeric)) {
      out.param = spliced_text(value);
      out.fallback = kFallbackText;
      if (like && value.is_string()) {
        // Frappe doubles backslashes (and percent signs, for its own %-formatting) before
        // escaping: a backslash matches itself, % and _ stay wildcards, nothing is added.
        std::string escaped;
        for (char ch : out.param) {
          escaped.push_back(ch);
          if (ch == '\\') escaped.push_back('\\');
        }
        out.param = std::move(escaped);
      }
    } else if (oper == "=" && kind == FieldKind::text) {
      out.param = spliced_text(value);  // Link / Data / Select compared as text
      out.fallback = kFallbackText;
    } else if (c.name == "name") {
      out.param = spliced_text(value);
      out.fallback = kFallbackText;
    } else {
      // flt(value): numbers, and strings that do not parse are 0.0.
      std::optional<double> d = value.is_string() ? flt_text(value.s) : std::optional<double>(value.number());
      if (!d) return error("Invalid number for " + quote(c.name) + ": " + shown(value));
      out.param = py_float_repr(*d);
      out.fallback = kFallbackNumber;
    }
    return out;
  }

  const TableMeta& t_;
  const ListLimits& limits_;
  std::string_view parameter_;
};

// Where one parameter's conditions go, counted (with the other parameter's) against max_filters.
struct FilterSink {
  std::string_view parameter;
  const ListLimits& limits;
  FilterCounter& counter;
  std::vector<Condition>& out;

  std::optional<ListError> count(std::size_t n) {
    counter.used += n;
    if (counter.used > limits.max_filters)
      return fail(parameter, "Too many filters: at most " + std::to_string(limits.max_filters));
    return std::nullopt;
  }

  std::optional<ListError> add(Result<std::optional<Condition>> c) {
    if (!c) return c.error();
    if (*c) out.push_back(std::move(**c));
    return std::nullopt;
  }
};

// The list form: [[fieldname, operator, value] or [doctype, fieldname, operator, value], …].
std::optional<ListError> read_filter_list(dom::array list, FilterBuilder& builder, FilterSink& sink) {
  if (auto err = sink.count(list.size())) return err;
  for (dom::element f : list) {
    if (f.type() != dom::element_type::ARRAY)
      return fail(sink.parameter, "Filter must be a list like [fieldname, operator, value]: " + quote(json_text(f)));
    dom::array parts = f.get_array().value_unsafe();
    std::vector<Val> v;
    for (dom::element p : parts) {
      v.push_back(to_val(p, sink.limits.max_in_values));
      if (v.size() > 4) break;
    }
    if (v.size() == 3) {
      if (auto err = sink.add(builder.build(nullptr, v[0], v[1], v[2]))) return err;
    } else if (v.size() == 4) {
      if (auto err = sink.add(builder.build(&v[0], v[1], v[2], v[3]))) return err;
    } else {
      return fail(sink.parameter,
                  "Filter must have 4 values (doctype, fieldname, operator, value): " + quote(json_text(f)));
    }
  }
  return std::nullopt;
}

// The object form: {fieldname: value, fieldname: [operator, value], …}.
std::optional<ListError> read_filter_object(dom::object obj, FilterBuilder& builder, FilterSink& sink) {
  if (auto err = sink.count(obj.size())) return err;
  // A Python dict: a repeated key keeps its first position and its last value.
  std::vector<std::pair<std::string, dom::element>> members;
  for (dom::key_value_pair kv : obj) {
    auto it = std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.first == kv.key; });
    if (it != members.end())
      it->second = kv.value;
    else
      members.emplace_back(std::string(kv.key), kv.value);
  }
  const std::size_t max_items = sink.limits.max_in_values;
  for (auto& [key, value] : members) {
    Val field;
    field.kind = Val::Kind::string;
    field.s = key;
    if (value.type() == dom::element_type::ARRAY) {
      // make_filter_tuple: {"field": [operator, value]}; more elements are ignored.
      dom::array pair = value.get_array().value_unsafe();
      if (pair.size() < 2)
        return fail(sink.parameter,
                    "Filter for " + quote(key) + " must be [operator, value]: " + quote(json_text(value)));
      auto it = pair.begin();
      Val op = to_val(*it, max_items);
      ++it;
      Val v = to_val(*it, max_items);
      if (auto err = sink.add(builder.build(nullptr, field, op, v))) return err;
    } else {
      Val op;
      op.kind = Val::Kind::string;
      op.s = "=";
      if (auto err = sink.add(builder.build(nullptr, field, op, to_val(value, max_items)))) return err;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<std::vector<Condition>> parse_filters(std::string_view parameter, const std::optional<std::string>& raw,
                                             const TableMeta& t, const ListLimits& limits, FilterCounter& counter) {
  std::vector<Condition> out;
  if (!raw || raw->empty()) return out;
  auto root = parse_json(parameter, *raw);
  if (!root) return root.error();
  dom::element e = *root;
  if (json_falsy(e)) return out;  // `filters or []`
  FilterBuilder builder(t, limits, parameter);
  FilterSink sink{parameter, limits, counter, out};
  std::optional<ListError> err;
  if (e.type() == dom::element_type::ARRAY)
    err = read_filter_list(e.get_array().value_unsafe(), builder, sink);
  else if (e.type() == dom::element_type::OBJECT)
    err = read_filter_object(e.get_object().value_unsafe(), builder, sink);
  else
    return fail(parameter, std::string(parameter) + " must be a JSON list of filters or an object");
  if (err) return *err;
  return out;
}

}  // namespace pitstop::origin::list
