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
#include "proxy/origin/list_query.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <utility>

#include "proxy/json/writer.hpp"

namespace pitstop::origin {
namespace {

namespace dom = simdjson::dom;

template <class T>
using Result = boost::system::result<T, ListError>;

// A parameter longer than this is refused before parsing. The HTTP layer's URL limit is far
// smaller; this only keeps other callers (and hostile tests) from making us parse megabytes.
constexpr std::size_t kMaxParamBytes = std::size_t{1} << 20;
// Error messages quote the offending text, cut to this many bytes so that a 10 MB field name
// does not become a 10 MB error response.
constexpr std::size_t kMaxQuoted = 140;
// Canonical re-serialisation recurses; nothing Frappe accepts nests deeper than 3.
constexpr std::size_t kMaxJsonDepth = 64;
// MariaDB refuses longer column aliases.
constexpr std::size_t kMaxAliasBytes = 256;
constexpr std::uint64_t kDefaultPageLength = 20;

// Frappe's fallbacks for IFNULL(column, fallback), spliced as constants (they never come from the
// request). FallBackDateTimeStr is frappe.database.utils.FallBackDateTimeStr.
constexpr std::string_view kFallbackText = "''";
constexpr std::string_view kFallbackNumber = "0";
constexpr std::string_view kFallbackDate = "'0001-01-01'";
constexpr std::string_view kFallbackDateTime = "'0001-01-01 00:00:00.000000'";
constexpr std::string_view kFallbackTime = "'00:00:00'";

// frappe.model: default_fields, optional_fields, child_table_fields. Frappe has no DocField for
// these, so prepare_filter_condition applies none of its per-fieldtype rules to them.
constexpr std::array<std::string_view, 16> kStandardFields = {
    "doctype",    "name",      "owner",   "creation",  "modified", "modified_by", "docstatus",   "idx",
    "_user_tags", "_comments", "_assign", "_liked_by", "_seen",    "parent",      "parentfield", "parenttype"};
constexpr std::array<std::string_view, 5> kOptionalFields = {"_user_tags", "_comments", "_assign", "_liked_by",
                                                             "_seen"};

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

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// A string result needs the tag: ListError is constructible from a string too.
Result<std::string> ok(std::string s) { return Result<std::string>(boost::system::in_place_value, std::move(s)); }

ListError fail(std::string_view parameter, std::string message) {
  return ListError{std::move(message), std::string(parameter)};
}

// The text for an error message: at most kMaxQuoted bytes, cut on a UTF-8 character boundary.
std::string quote(std::string_view s) {
  if (s.size() <= kMaxQuoted) return std::string(s);
  std::size_t n = kMaxQuoted;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  std::string out(s.substr(0, n));
  out += "...";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text helpers

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim_ascii(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

// Length of a whitespace character (as Python's str.isspace() sees it) at the start / end of s, or 0.
std::size_t py_space_prefix(std::string_view s) {
  if (s.empty()) return 0;
  auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  if (is_ascii_space(s[0]) || (b(0) >= 0x1C && b(0) <= 0x1F)) return 1;
  if (s.size() >= 2 && b(0) == 0xC2 && (b(1) == 0x85 || b(1) == 0xA0)) return 2;  // U+0085, U+00A0
  if (s.size() >= 3) {
    if (b(0) == 0xE1 && b(1) == 0x9A && b(2) == 0x80) return 3;  // U+1680
    if (b(0) == 0xE2 && b(1) == 0x80 &&
        ((b(2) >= 0x80 && b(2) <= 0x8A) || b(2) == 0xA8 || b(2) == 0xA9 || b(2) == 0xAF))
      return 3;                                                  // U+2000..200A, 2028, 2029, 202F
    if (b(0) == 0xE2 && b(1) == 0x81 && b(2) == 0x9F) return 3;  // U+205F
    if (b(0) == 0xE3 && b(1) == 0x80 && b(2) == 0x80) return 3;  // U+3000
  }
  return 0;
}

std::size_t py_space_suffix(std::string_view s) {
  for (std::size_t n = 1; n <= 3 && n <= s.size(); ++n)
    if (py_space_prefix(s.substr(s.size() - n)) == n) return n;
  return 0;
}

// Python's str.strip(): Frappe strips every `in` value with it.
std::string_view py_strip(std::string_view s) {
  while (std::size_t n = py_space_prefix(s)) s.remove_prefix(n);
  while (std::size_t n = py_space_suffix(s)) s.remove_suffix(n);
  return s;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && lower_ascii(a) == b;  // b is lower-case
}

// Identifiers always come from TableMeta; doubling backticks keeps even odd names inert.
std::string quote_ident(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out.push_back('`');
  for (char c : name) {
    out.push_back(c);
    if (c == '`') out.push_back('`');
  }
  out.push_back('`');
  return out;
}

std::string column_sql(const TableMeta& t, const ColumnMeta& c) {
  return quote_ident(t.table) + "." + quote_ident(c.name);
}

std::string json_text(dom::element e) {
  std::string s = simdjson::minify(e);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Numbers, dates and times as Frappe converts them

std::string py_float_repr(double d) {
  std::string out;
  json::append_double(out, d);  // Python's repr(float), which is what Frappe splices
  return out;
}

// frappe.utils.flt for a string: commas removed, then float(); anything unparsable is 0.0.
std::optional<double> flt_text(std::string_view s) {
  std::string t;
  for (char c : py_strip(s))
    if (c != ',') t.push_back(c);
  // float() accepts underscores between digits ("1_000").
  std::string u;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_' && i > 0 && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i - 1])) &&
        std::isdigit(static_cast<unsigned char>(t[i + 1])))
      continue;
    u.push_back(t[i]);
  }
  std::string_view v = py_strip(u);
  bool negative = false;
  if (!v.empty() && (v.front() == '+' || v.front() == '-')) {
    negative = v.front() == '-';
    v.remove_prefix(1);
  }
  if (v.empty() || v.front() == '+' || v.front() == '-') return 0.0;
  double d = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), d, std::chars_format::general);
  if (ec != std::errc{} || ptr != v.data() + v.size()) {
    // from_chars refuses ".5"-less forms like "5." on some libraries; retry with a trailing 0.
    if (!v.empty() && v.back() == '.') {
      std::string w(v);
      w.push_back('0');
      auto r = std::from_chars(w.data(), w.data() + w.size(), d, std::chars_format::general);
      if (r.ec != std::errc{} || r.ptr != w.data() + w.size()) return 0.0;
    } else {
      return 0.0;
    }
  }
  // float("nan") and float("inf") parse, but spliced into SQL they are a syntax error in Frappe.
  if (!std::isfinite(d)) return std::nullopt;
  return negative ? -d : d;
}

struct DateTime {
  int year = 0, month = 0, day = 0;
  int hour = 0, minute = 0, second = 0, micro = 0;
  bool has_time = false;
};

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// Reads 1..max_digits decimal digits.
bool read_int(std::string_view s, std::size_t& i, std::size_t min_digits, std::size_t max_digits, int& out) {
  std::size_t start = i;
  out = 0;
  while (i < s.size() && i - start < max_digits && s[i] >= '0' && s[i] <= '9') out = out * 10 + (s[i++] - '0');
  return i - start >= min_digits;
}

// H:MM[:SS[.ffffff]] from position i to the end of s.
bool read_time(std::string_view s, std::size_t i, DateTime& dt) {
  if (!read_int(s, i, 1, 2, dt.hour) || i >= s.size() || s[i] != ':') return false;
  ++i;
  if (!read_int(s, i, 2, 2, dt.minute)) return false;
  if (i < s.size() && s[i] == ':') {
    ++i;
    if (!read_int(s, i, 2, 2, dt.second)) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      std::size_t start = i;
      if (!read_int(s, i, 1, 6, dt.micro)) return false;
      for (std::size_t n = i - start; n < 6; ++n) dt.micro *= 10;
    }
  }
  dt.has_time = true;
  return i == s.size() && dt.hour <= 23 && dt.minute <= 59 && dt.second <= 59;
}

// The date forms Frappe's getdate/get_datetime read the same whatever the system date format:
// YYYY-M-D, optionally followed by ' ' or 'T' and a time. Frappe (dateutil) reads many more
// spellings, some of them depending on System Settings; those are refused here.
std::optional<DateTime> parse_datetime(std::string_view text) {
  std::string_view s = trim_ascii(text);
  DateTime dt;
  std::size_t i = 0;
  if (!read_int(s, i, 4, 4, dt.year) || i >= s.size() || s[i] != '-') return std::nullopt;
  ++i;
  if (!read_int(s, i, 1, 2, dt.month) || i >= s.size() || s[i] != '-') return std::nullopt;
  ++i;
  if (!read_int(s, i, 1, 2, dt.day)) return std::nullopt;
  if (dt.year < 1 || dt.month < 1 || dt.month > 12 || dt.day < 1 || dt.day > days_in(dt.year, dt.month))
    return std::nullopt;
  // getdate() returns None for 0001-01-01 (is_invalid_date_string), which then fails in Frappe.
  if (dt.year == 1 && dt.month == 1 && dt.day == 1) return std::nullopt;
  if (i == s.size()) return dt;
  if (s[i] != ' ' && s[i] != 'T') return std::nullopt;
  if (!read_time(s, i + 1, dt)) return std::nullopt;
  return dt;
}

std::string format_date(const DateTime& d) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", d.year, d.month, d.day);
  return buf;
}

std::string format_datetime(const DateTime& d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06d", d.year, d.month, d.day, d.hour, d.minute,
                d.second, d.micro);
  return buf;
}

std::optional<std::string> format_time(std::string_view text) {
  DateTime t;
  if (!read_time(trim_ascii(text), 0, t)) return std::nullopt;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%06d", t.hour, t.minute, t.second, t.micro);
  return std::string(buf);
}

// ---------------------------------------------------------------------------------------------
// JSON values copied out of the parser (its string_views die at the next parse)

struct Val {
  enum class Kind { null, boolean, integer, unsigned_integer, floating, string, array, object };
  Kind kind = Kind::null;
  bool b = false;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double d = 0;
  std::string s;
  std::vector<Val> items;  // array elements, one level deep
  std::size_t size = 0;    // elements of an array or members of an object
  bool copied = true;      // false: an array whose elements were not copied (nested, or too many)
  std::string json;        // the value as JSON, for error messages

  bool is_string() const { return kind == Kind::string; }
  bool is_number() const { return kind == Kind::integer || kind == Kind::unsigned_integer || kind == Kind::floating; }
  bool is_scalar() const { return kind != Kind::array && kind != Kind::object; }
  // Python truthiness, which Frappe tests all over the place (`if f.value`, `f.value or ""`).
  bool truthy() const {
    switch (kind) {
      case Kind::null:
        return false;
      case Kind::boolean:
        return b;
      case Kind::integer:
        return i != 0;
      case Kind::unsigned_integer:
        return u != 0;
      case Kind::floating:
        return d != 0;
      case Kind::string:
        return !s.empty();
      case Kind::array:
      case Kind::object:
        return size != 0;
    }
    return false;
  }
  double number() const {
    switch (kind) {
      case Kind::boolean:
        return b ? 1 : 0;
      case Kind::integer:
        return static_cast<double>(i);
      case Kind::unsigned_integer:
        return static_cast<double>(u);
      case Kind::floating:
        return d;
      default:
        return 0;
    }
  }
};

std::string number_text(const Val& v) {
  switch (v.kind) {
    case Val::Kind::integer:
      return std::to_string(v.i);
    case Val::Kind::unsigned_integer:
      return std::to_string(v.u);
    case Val::Kind::floating:
      return py_float_repr(v.d);
    default:
      return {};
  }
}

// Python's str() of a scalar (frappe.utils.cstr): None is "", True is "True".
std::string py_str(const Val& v) {
  switch (v.kind) {
    case Val::Kind::null:
      return {};
    case Val::Kind::boolean:
      return v.b ? "True" : "False";
    case Val::Kind::string:
      return v.s;
    default:
      return number_text(v);
  }
}

// What MariaDB compares against when Frappe splices a non-string Python value unescaped
// (`col = 5`, `col like True`): numbers as written, booleans as 1/0.
std::string spliced_text(const Val& v) {
  switch (v.kind) {
    case Val::Kind::boolean:
      return v.b ? "1" : "0";
    case Val::Kind::string:
      return v.s;
    case Val::Kind::null:
      return {};
    default:
      return number_text(v);
  }
}

Val to_val(dom::element e, std::size_t max_items, bool copy_items = true) {
  Val v;
  switch (e.type()) {
    case dom::element_type::NULL_VALUE:
      v.kind = Val::Kind::null;
      break;
    case dom::element_type::BOOL:
      v.kind = Val::Kind::boolean;
      v.b = e.get_bool().value_unsafe();
      break;
    case dom::element_type::INT64:
      v.kind = Val::Kind::integer;
      v.i = e.get_int64().value_unsafe();
      break;
    case dom::element_type::UINT64:
      v.kind = Val::Kind::unsigned_integer;
      v.u = e.get_uint64().value_unsafe();
      break;
    case dom::element_type::DOUBLE:
      v.kind = Val::Kind::floating;
      v.d = e.get_double().value_unsafe();
      break;
    case dom::element_type::STRING:
      v.kind = Val::Kind::string;
      v.s = std::string(e.get_string().value_unsafe());
      break;
    case dom::element_type::ARRAY: {
      v.kind = Val::Kind::array;
      dom::array a = e.get_array().value_unsafe();
      v.size = a.size();
      v.copied = copy_items && v.size <= max_items;
      if (v.copied) {
        v.items.reserve(v.size);
        for (dom::element child : a) v.items.push_back(to_val(child, max_items, false));
      }
      break;
    }
    case dom::element_type::OBJECT:
      v.kind = Val::Kind::object;
      v.size = e.get_object().value_unsafe().size();
      break;
  }
  if (!v.is_scalar() || v.is_number()) v.json = json_text(e);
  return v;
}

// Text of a value for an error message.
std::string shown(const Val& v) {
  if (v.is_string()) return quote(v.s);
  if (v.kind == Val::Kind::null) return "null";
  if (v.kind == Val::Kind::boolean) return v.b ? "true" : "false";
  return quote(v.json);
}

dom::parser& json_parser() {
  // One per thread: dom::parser is not thread-safe, and reusing it keeps its buffers.
  thread_local dom::parser parser(kMaxParamBytes);
  return parser;
}

Result<dom::element> parse_json(std::string_view parameter, const std::string& text) {
  if (text.size() > kMaxParamBytes) return fail(parameter, std::string(parameter) + " is too long");
  dom::element root;
  // parse(const std::string&) copies into a padded buffer when the string lacks SIMDJSON_PADDING.
  if (auto err = json_parser().parse(text).get(root))
    return fail(parameter, std::string(parameter) + " is not valid JSON: " + simdjson::error_message(err));
  return root;
}

// Python falsiness of a parsed parameter: Frappe treats a falsy `fields` / `filters` as absent.
bool json_falsy(dom::element e) {
  switch (e.type()) {
    case dom::element_type::NULL_VALUE:
      return true;
    case dom::element_type::BOOL:
      return !e.get_bool().value_unsafe();
    case dom::element_type::INT64:
      return e.get_int64().value_unsafe() == 0;
    case dom::element_type::UINT64:
      return e.get_uint64().value_unsafe() == 0;
    case dom::element_type::DOUBLE:
      return e.get_double().value_unsafe() == 0;
    case dom::element_type::STRING:
      return e.get_string().value_unsafe().empty();
    case dom::element_type::ARRAY:
      return e.get_array().value_unsafe().size() == 0;
    case dom::element_type::OBJECT:
      return e.get_object().value_unsafe().size() == 0;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Column references: name, `name`, `tabDocType`.`name`, tabDocType.name

enum class FieldKind { standard, date, datetime, time, numeric, text };

// Frappe decides by DocField fieldtype; the table's DATA_TYPE is what we know, and Frappe's type
// map makes the two agree: Date -> date, Datetime -> datetime, Time -> time,
// Check/Int/Float/Currency/Percent -> int/decimal, everything else textual.
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

struct ColumnRef {
  enum class Status { ok, syntax, other_doctype, unknown };
  Status status = Status::syntax;
  const ColumnMeta* column = nullptr;
  std::string name;  // the column name as written (without quotes)
  bool qualified = false;
};

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

struct SelectItem {
  std::string sql;
  std::vector<std::string> names;
  std::string alias;  // explicit alias or an aggregate's own text: ORDER BY may name it
  bool aggregate = false;
};

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

struct Fields {
  std::vector<SelectItem> items;
  bool explicit_fields = false;
};

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
    if (*item) out.items.push_back(std::move(**item));
  }
  if (out.items.empty()) return fail("fields", "No fields left to select");
  return out;
}

// ---------------------------------------------------------------------------------------------
// filters and or_filters

struct Condition {
  std::string sql;
  std::vector<std::string> params;
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
    const bool like = oper == "like" || oper == "not like";
    // primary key is never nullable, modified / creation always present
    bool can_be_null = c.name != "name" && !stamp;
    if (kind == FieldKind::numeric) can_be_null = false;
    if (!value.is_scalar() && oper != "between")
      return error("Invalid value for " + quote(c.name) + ": " + shown(value));
    // Null values can never be greater than any non-null value.
    if ((oper == ">" || oper == ">=") && (stamp || kind == FieldKind::date || kind == FieldKind::datetime))
      can_be_null = false;

    std::string param;
    std::string_view fallback = kFallbackText;
    bool wrapped = false;  // the column is already IFNULL(...)
    std::string col = column_sql(t_, c);

    if ((oper == ">" || oper == "<" || oper == ">=" || oper == "<=") && stamp) {
      param = py_str(value);  // cstr(f.value), compared as given
      can_be_null = false;
      fallback = kFallbackDateTime;
    } else if (oper == "between") {
      if (stamp || kind == FieldKind::date || kind == FieldKind::datetime)
        return between_condition(c, stamp ? FieldKind::datetime : kind, value);
      // Frappe splices the list itself for other fieldtypes: an SQL error there.
      return error("between is only supported on date and datetime fields, not " + quote(c.name));
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
      param.clear();
    } else if (kind == FieldKind::date) {
      // frappe.db.format_date(getdate(value)); getdate() of an empty value is today: refused.
      if (!value.is_string()) return error("Invalid date for " + quote(c.name) + ": " + shown(value));
      auto dt = parse_datetime(value.s);
      if (!dt) return error("Invalid date for " + quote(c.name) + ": " + quote(value.s));
      param = format_date(*dt);
      fallback = kFallbackDate;
    } else if (kind == FieldKind::datetime) {
      if (!value.truthy()) {
        param = std::string(kFallbackDateTime.substr(1, kFallbackDateTime.size() - 2));
      } else {
        if (!value.is_string()) return error("Invalid date for " + quote(c.name) + ": " + shown(value));
        auto dt = parse_datetime(value.s);
        if (!dt) return error("Invalid date for " + quote(c.name) + ": " + quote(value.s));
        param = format_datetime(*dt);
      }
      fallback = kFallbackDateTime;
    } else if (kind == FieldKind::time) {
      std::optional<std::string> t = value.is_string() ? format_time(value.s) : std::nullopt;
      if (!t) return error("Invalid time for " + quote(c.name) + ": " + shown(value));
      param = *t;
      fallback = kFallbackTime;
    } else if (like || (value.is_string() && kind != FieldKind::numeric)) {
      param = spliced_text(value);
      fallback = kFallbackText;
      if (like && value.is_string()) {
        // Frappe doubles backslashes (and percent signs, for its own %-formatting) before
        // escaping: a backslash matches itself, % and _ stay wildcards, nothing is added.
        std::string escaped;
        for (char ch : param) {
          escaped.push_back(ch);
          if (ch == '\\') escaped.push_back('\\');
        }
        param = std::move(escaped);
      }
    } else if (oper == "=" && kind == FieldKind::text) {
      param = spliced_text(value);  // Link / Data / Select compared as text
      fallback = kFallbackText;
    } else if (c.name == "name") {
      param = spliced_text(value);
      fallback = kFallbackText;
    } else {
      // flt(value): numbers, and strings that do not parse are 0.0.
      std::optional<double> d = value.is_string() ? flt_text(value.s) : std::optional<double>(value.number());
      if (!d) return error("Invalid number for " + quote(c.name) + ": " + shown(value));
      param = py_float_repr(*d);
      fallback = kFallbackNumber;
    }
    auto checked_param = checked(std::move(param), c);
    if (!checked_param) return checked_param.error();

    Condition cond;
    std::string op_sql = oper == "like" ? "LIKE" : oper == "not like" ? "NOT LIKE" : oper;
    bool plain = !can_be_null || (value.truthy() && (oper == "=" || oper == "like")) || wrapped;
    if (plain)
      cond.sql = col + " " + op_sql + " ?";
    else
      cond.sql = "IFNULL(" + col + ", " + std::string(fallback) + ") " + op_sql + " ?";
    cond.params.push_back(std::move(*checked_param));
    return std::optional<Condition>(std::move(cond));
  }

  const TableMeta& t_;
  const ListLimits& limits_;
  std::string_view parameter_;
};

struct FilterCounter {
  std::size_t used = 0;
};

Result<std::vector<Condition>> parse_filters(std::string_view parameter, const std::optional<std::string>& raw,
                                             const TableMeta& t, const ListLimits& limits, FilterCounter& counter) {
  std::vector<Condition> out;
  if (!raw || raw->empty()) return out;
  auto root = parse_json(parameter, *raw);
  if (!root) return root.error();
  dom::element e = *root;
  if (json_falsy(e)) return out;  // `filters or []`
  FilterBuilder builder(t, limits, parameter);
  auto count = [&](std::size_t n) -> std::optional<ListError> {
    counter.used += n;
    if (counter.used > limits.max_filters)
      return fail(parameter, "Too many filters: at most " + std::to_string(limits.max_filters));
    return std::nullopt;
  };
  auto add = [&](Result<std::optional<Condition>> c) -> std::optional<ListError> {
    if (!c) return c.error();
    if (*c) out.push_back(std::move(**c));
    return std::nullopt;
  };

  if (e.type() == dom::element_type::ARRAY) {
    dom::array list = e.get_array().value_unsafe();
    if (auto err = count(list.size())) return *err;
    for (dom::element f : list) {
      if (f.type() != dom::element_type::ARRAY)
        return fail(parameter, "Filter must be a list like [fieldname, operator, value]: " + quote(json_text(f)));
      dom::array parts = f.get_array().value_unsafe();
      std::vector<Val> v;
      for (dom::element p : parts) {
        v.push_back(to_val(p, limits.max_in_values));
        if (v.size() > 4) break;
      }
      if (v.size() == 3) {
        if (auto err = add(builder.build(nullptr, v[0], v[1], v[2]))) return *err;
      } else if (v.size() == 4) {
        if (auto err = add(builder.build(&v[0], v[1], v[2], v[3]))) return *err;
      } else {
        return fail(parameter,
                    "Filter must have 4 values (doctype, fieldname, operator, value): " + quote(json_text(f)));
      }
    }
    return out;
  }

  if (e.type() == dom::element_type::OBJECT) {
    dom::object obj = e.get_object().value_unsafe();
    if (auto err = count(obj.size())) return *err;
    // A Python dict: a repeated key keeps its first position and its last value.
    std::vector<std::pair<std::string, dom::element>> members;
    for (dom::key_value_pair kv : obj) {
      auto it = std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.first == kv.key; });
      if (it != members.end())
        it->second = kv.value;
      else
        members.emplace_back(std::string(kv.key), kv.value);
    }
    for (auto& [key, value] : members) {
      Val field;
      field.kind = Val::Kind::string;
      field.s = key;
      if (value.type() == dom::element_type::ARRAY) {
        // make_filter_tuple: {"field": [operator, value]}; more elements are ignored.
        dom::array pair = value.get_array().value_unsafe();
        if (pair.size() < 2)
          return fail(parameter, "Filter for " + quote(key) + " must be [operator, value]: " + quote(json_text(value)));
        auto it = pair.begin();
        Val op = to_val(*it, limits.max_in_values);
        ++it;
        Val v = to_val(*it, limits.max_in_values);
        if (auto err = add(builder.build(nullptr, field, op, v))) return *err;
      } else {
        Val op;
        op.kind = Val::Kind::string;
        op.s = "=";
        if (auto err = add(builder.build(nullptr, field, op, to_val(value, limits.max_in_values)))) return *err;
      }
    }
    return out;
  }

  return fail(parameter, std::string(parameter) + " must be a JSON list of filters or an object");
}

// ---------------------------------------------------------------------------------------------
// order_by and group_by

// Splits on commas outside backticks.
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

// The last space-separated token outside backticks, if it is asc / desc.
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

struct PageLength {
  std::uint64_t value = kDefaultPageLength;  // 0: all rows
  std::string_view parameter = "limit_page_length";
};

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

// ---------------------------------------------------------------------------------------------
// Canonical JSON

std::optional<ListError> write_canonical(json::Writer& w, dom::element e, std::string_view parameter,
                                         std::size_t depth) {
  if (depth > kMaxJsonDepth) return fail(parameter, std::string(parameter) + " is nested too deeply");
  switch (e.type()) {
    case dom::element_type::NULL_VALUE:
      w.null();
      break;
    case dom::element_type::BOOL:
      w.value(e.get_bool().value_unsafe());
      break;
    case dom::element_type::INT64:
      w.value(e.get_int64().value_unsafe());
      break;
    case dom::element_type::UINT64:
      w.value(e.get_uint64().value_unsafe());
      break;
    // Python keeps 1.0 and 1 apart (str() differs, and Frappe uses str() for `in`), so do we.
    case dom::element_type::DOUBLE:
      w.value(e.get_double().value_unsafe());
      break;
    case dom::element_type::STRING:
      w.value(e.get_string().value_unsafe());
      break;
    case dom::element_type::ARRAY: {
      // A named copy: ranging over value_unsafe() would keep a reference into a temporary.
      dom::array a = e.get_array().value_unsafe();
      w.begin_array();
      for (dom::element child : a)
        if (auto err = write_canonical(w, child, parameter, depth + 1)) return err;
      w.end_array();
      break;
    }
    case dom::element_type::OBJECT: {
      // Sorted keys; a repeated key keeps its last value, as in a Python dict.
      std::vector<std::pair<std::string_view, dom::element>> members;
      dom::object obj = e.get_object().value_unsafe();
      for (dom::key_value_pair kv : obj) members.emplace_back(kv.key, kv.value);
      std::stable_sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      w.begin_object();
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i + 1 < members.size() && members[i + 1].first == members[i].first) continue;
        w.key(members[i].first);
        if (auto err = write_canonical(w, members[i].second, parameter, depth + 1)) return err;
      }
      w.end_object();
      break;
    }
  }
  return std::nullopt;
}

// The canonical JSON of a parameter, or nullopt when it is absent or falsy (which Frappe treats
// as absent).
Result<std::optional<std::string>> canonical_json(std::string_view parameter, const std::optional<std::string>& raw) {
  if (!raw || raw->empty()) return std::optional<std::string>();
  auto root = parse_json(parameter, *raw);
  if (!root) return root.error();
  if (json_falsy(*root)) return std::optional<std::string>();
  std::string out;
  json::Writer w(out);
  if (auto err = write_canonical(w, *root, parameter, 0)) return *err;
  return std::optional<std::string>(std::move(out));
}

// order_by / group_by text: items trimmed and joined with ", ", whitespace runs outside
// backticks collapsed, a trailing asc / desc lower-cased.
std::string canonical_clause(std::string_view text, bool directions) {
  std::string_view trimmed = trim_ascii(text);
  if (trimmed.empty()) return {};
  std::vector<std::string> items;
  for (auto raw_item : split_items(trimmed)) {
    std::string item;
    bool in_tick = false;
    bool pending_space = false;
    for (char c : trim_ascii(raw_item)) {
      if (c == '`') in_tick = !in_tick;
      if (!in_tick && is_ascii_space(c)) {
        pending_space = true;
        continue;
      }
      if (pending_space) item.push_back(' ');
      pending_space = false;
      item.push_back(c);
    }
    if (directions) {
      auto [expr, direction] = split_direction(item);
      if (!direction.empty()) item = std::string(expr) + " " + lower_ascii(direction);
    }
    items.push_back(std::move(item));
  }
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += items[i];
  }
  return out;
}

}  // namespace

boost::system::result<ListQuery, ListError> build_list_query(const TableMeta& table, const ListRequest& request,
                                                             const ListLimits& limits) {
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

  q.sql = "SELECT ";
  bool first = true;
  for (auto& item : fields->items) {
    if (!first) q.sql += ", ";
    first = false;
    q.sql += item.sql;
    for (auto& n : item.names) q.output_names.push_back(std::move(n));
  }
  q.sql += " FROM " + quote_ident(table.table);

  // build_conditions / prepare_args: filters ANDed, or_filters ORed as one more ANDed group.
  std::vector<std::string> where;
  for (auto& c : *filters) {
    where.push_back(std::move(c.sql));
    for (auto& p : c.params) q.params.push_back(std::move(p));
  }
  if (!or_filters->empty()) {
    std::string group = "(";
    for (std::size_t i = 0; i < or_filters->size(); ++i) {
      auto& c = (*or_filters)[i];
      if (i) group += " OR ";
      group += c.sql;
      for (auto& p : c.params) q.params.push_back(std::move(p));
    }
    group += ")";
    where.push_back(std::move(group));
  }
  for (std::size_t i = 0; i < where.size(); ++i) q.sql += (i ? " AND " : " WHERE ") + where[i];

  if (!group_by->empty()) q.sql += " GROUP BY " + *group_by;
  if (!order_by->empty()) q.sql += " ORDER BY " + *order_by;

  // add_limit: no page length means no LIMIT (and no OFFSET either). We never run an unbounded
  // query: fetch one row more than max_rows so the caller can tell "too many" from "all".
  std::uint64_t offset = *start;
  std::uint64_t sql_limit = page->value;
  const std::uint64_t max_rows = limits.max_rows;
  if (page->value == 0 || page->value > max_rows) {
    if (page->value == 0) offset = 0;
    q.limit = static_cast<std::size_t>(max_rows);
    q.capped = true;
    sql_limit = max_rows == std::numeric_limits<std::uint64_t>::max() ? max_rows : max_rows + 1;
  } else {
    q.limit = static_cast<std::size_t>(page->value);
  }
  q.sql += " LIMIT ? OFFSET ?";
  q.params.push_back(std::to_string(sql_limit));
  q.params.push_back(std::to_string(offset));
  return q;
}

boost::system::result<std::string, ListError> canonical_list_request(const ListRequest& request) {
  auto fields = canonical_json("fields", request.fields);
  if (!fields) return fields.error();
  auto filters = canonical_json("filters", request.filters);
  if (!filters) return filters.error();
  auto or_filters = canonical_json("or_filters", request.or_filters);
  if (!or_filters) return or_filters.error();
  auto start = limit_start(request);
  if (!start) return start.error();
  auto page = page_length(request);
  if (!page) return page.error();

  std::string out;
  json::Writer w(out);
  w.begin_object();
  w.member("as_dict", std::int64_t{as_dict_value(request) ? 1 : 0});
  // No fields (or falsy ones) and ["name"] select the same thing.
  w.key("fields").raw(*fields ? **fields : std::string_view(R"(["name"])"));
  if (*filters) w.key("filters").raw(**filters);
  if (request.group_by) {
    std::string g = canonical_clause(*request.group_by, false);
    if (!g.empty()) w.member("group_by", g);
  }
  w.member("limit", static_cast<std::uint64_t>(page->value));
  // Without a page length Frappe ignores limit_start.
  w.member("limit_start", static_cast<std::uint64_t>(page->value == 0 ? 0 : *start));
  if (*or_filters) w.key("or_filters").raw(**or_filters);
  // An absent order_by (the doctype's default order) and an empty one (no order) differ.
  if (request.order_by) w.member("order_by", canonical_clause(*request.order_by, true));
  w.end_object();
  return ok(std::move(out));
}

void throw_exception_from_error(const ListError& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

}  // namespace pitstop::origin
