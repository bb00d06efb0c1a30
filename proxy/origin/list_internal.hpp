#pragma once
// What the parts of the list query share: list_query.cpp builds the SELECT from what
// list_fields.cpp, list_filters.cpp and list_order.cpp parse; list_canonical.cpp keys the cache;
// list_json.cpp copies parameter JSON into Vals. Internal to the origin. The Frappe sources all of
// this mirrors are named at the top of list_query.cpp.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/system/result.hpp>

#include "proxy/origin/frappe_values.hpp"
#include "proxy/origin/list_query.hpp"

// Parsed JSON stays opaque here: simdjson is included by the .cpp files that walk it.
namespace simdjson::dom {
class element;
}  // namespace simdjson::dom

namespace pitstop::origin::list {

using frappe::flt_text;
using frappe::format_date;
using frappe::format_datetime;
using frappe::format_time;
using frappe::iequals;
using frappe::is_ascii_space;
using frappe::lower_ascii;
using frappe::parse_datetime;
using frappe::py_float_repr;
using frappe::py_strip;
using frappe::quote_ident;
using frappe::trim_ascii;

template <class T>
using Result = boost::system::result<T, ListError>;

// A parameter longer than this is refused before parsing. The HTTP layer's URL limit is far
// smaller; this only keeps other callers (and hostile tests) from making us parse megabytes.
inline constexpr std::size_t kMaxParamBytes = std::size_t{1} << 20;
// Error messages quote the offending text, cut to this many bytes so that a 10 MB field name
// does not become a 10 MB error response.
inline constexpr std::size_t kMaxQuoted = 140;
inline constexpr std::uint64_t kDefaultPageLength = 20;

// frappe.model.optional_fields: a table may lack them, and Frappe then drops them from `fields`
// and `filters` (set_optional_columns) instead of refusing them.
inline constexpr std::array<std::string_view, 5> kOptionalFields = {"_user_tags", "_comments", "_assign",
                                                                    "_liked_by", "_seen"};

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// A string result needs the tag: ListError is constructible from a string too.
inline Result<std::string> ok(std::string s) {
  return Result<std::string>(boost::system::in_place_value, std::move(s));
}

inline ListError fail(std::string_view parameter, std::string message) {
  return ListError{std::move(message), std::string(parameter)};
}

// The text for an error message: at most kMaxQuoted bytes, cut on a UTF-8 character boundary.
inline std::string quote(std::string_view s) {
  if (s.size() <= kMaxQuoted) return std::string(s);
  std::size_t n = kMaxQuoted;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  std::string out(s.substr(0, n));
  out += "...";
  return out;
}

inline std::string column_sql(const TableMeta& t, const ColumnMeta& c) {
  return quote_ident(t.table) + "." + quote_ident(c.name);
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

// Python's str() of a scalar (frappe.utils.cstr): None is "", True is "True".
std::string py_str(const Val& v);
// What MariaDB compares against when Frappe splices a non-string Python value unescaped
// (`col = 5`, `col like True`): numbers as written, booleans as 1/0.
std::string spliced_text(const Val& v);
// Text of a value for an error message.
std::string shown(const Val& v);

// The element copied into a Val; array elements (one level deep) only when there are at most
// max_items of them.
Val to_val(simdjson::dom::element e, std::size_t max_items, bool copy_items = true);
std::string json_text(simdjson::dom::element e);  // minified, for error messages
// Parses a parameter with this thread's parser: the element lives until the thread's next parse.
Result<simdjson::dom::element> parse_json(std::string_view parameter, const std::string& text);
// Python falsiness of a parsed parameter: Frappe treats a falsy `fields` / `filters` as absent.
bool json_falsy(simdjson::dom::element e);

// ---------------------------------------------------------------------------------------------
// Column references: name, `name`, `tabDocType`.`name`, tabDocType.name

enum class FieldKind { standard, date, datetime, time, numeric, text };

// Frappe decides by DocField fieldtype; the table's DATA_TYPE is what we know, and Frappe's type
// map makes the two agree: Date -> date, Datetime -> datetime, Time -> time,
// Check/Int/Float/Currency/Percent -> int/decimal, everything else textual.
FieldKind field_kind(const ColumnMeta& c);

struct ColumnRef {
  enum class Status { ok, syntax, other_doctype, unknown };
  Status status = Status::syntax;
  const ColumnMeta* column = nullptr;
  std::string name;  // the column name as written (without quotes)
  bool qualified = false;
};

ColumnRef parse_column_ref(std::string_view text, const TableMeta& t);

// ---------------------------------------------------------------------------------------------
// fields

struct SelectItem {
  std::string sql;
  std::vector<std::string> names;
  std::string alias;  // explicit alias or an aggregate's own text: ORDER BY may name it
  bool aggregate = false;
  bool hidden = false;  // left out: above the reader's level (no sql)
};

struct Fields {
  std::vector<SelectItem> items;
  bool explicit_fields = false;
  bool hidden_dropped = false;  // a field was left out as above the reader's level
};

Result<Fields> parse_fields(const ListRequest& r, const TableMeta& t, const ListLimits& limits);

// ---------------------------------------------------------------------------------------------
// filters and or_filters

struct Condition {
  std::string sql;
  std::vector<std::string> params;
};

struct FilterCounter {
  std::size_t used = 0;
};

// `filters` or `or_filters` (parameter), as a list of lists or an object; counter counts the
// filters of both against max_filters.
Result<std::vector<Condition>> parse_filters(std::string_view parameter, const std::optional<std::string>& raw,
                                             const TableMeta& t, const ListLimits& limits, FilterCounter& counter);

// ---------------------------------------------------------------------------------------------
// order_by and group_by

// Splits on commas outside backticks.
std::vector<std::string_view> split_items(std::string_view s);
// The last space-separated token outside backticks, if it is asc / desc.
std::pair<std::string_view, std::string_view> split_direction(std::string_view item);

Result<std::string> parse_group_by(const ListRequest& r, const TableMeta& t, const ListLimits& limits);
Result<std::string> parse_order_by(const ListRequest& r, const TableMeta& t, const ListLimits& limits,
                                   const Fields& fields, bool grouped);

// ---------------------------------------------------------------------------------------------
// limits and as_dict

struct PageLength {
  std::uint64_t value = kDefaultPageLength;  // 0: all rows
  std::string_view parameter = "limit_page_length";
};

Result<PageLength> page_length(const ListRequest& r);
Result<std::uint64_t> limit_start(const ListRequest& r);
bool as_dict_value(const ListRequest& r);

}  // namespace pitstop::origin::list
