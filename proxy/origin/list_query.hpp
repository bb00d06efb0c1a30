#pragma once
// Frappe's list API (GET /api/resource/<DocType>) turned into one parameterised SELECT: the
// `fields`, `filters`, `or_filters`, `order_by`, `group_by`, `limit_start`, `limit_page_length`
// (alias `limit`) and `as_dict` query parameters, read exactly as frappe.client.get_list /
// frappe.model.db_query read them. Every identifier is checked against the table's real
// columns; values are bound, never spliced. Anything else is a ListError (417 for the client).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

namespace pitstop::origin {

struct ColumnMeta {
  std::string name;
  std::string data_type;  // information_schema DATA_TYPE: varchar, int, decimal, date, datetime, text, …
  std::size_t max_chars = 0;  // CHARACTER_MAXIMUM_LENGTH of text columns (0: not text)
  bool nullable = true;
  // Above the reader's permission level: never selected (asked for, it is left out, as Frappe
  // leaves it out); filters, ordering and grouping may still name it, as in Frappe.
  bool hidden = false;
};

struct TableMeta {
  std::string doctype;  // "Service Order"
  std::string table;    // "tabService Order"
  std::vector<ColumnMeta> columns;
  const ColumnMeta* find(std::string_view column) const {
    for (const auto& c : columns)
      if (c.name == column) return &c;
    return nullptr;
  }
};

// The raw (already percent-decoded) query parameter values; nullopt when absent.
struct ListRequest {
  std::optional<std::string> fields;             // JSON list of strings, e.g. ["name","status"]
  std::optional<std::string> filters;            // JSON list of lists, or JSON object
  std::optional<std::string> or_filters;         // same forms
  std::optional<std::string> order_by;           // "modified desc, name asc"
  std::optional<std::string> group_by;           // "status"
  std::optional<std::string> limit_start;        // integer
  std::optional<std::string> limit_page_length;  // integer; 0 = all
  std::optional<std::string> limit;              // alias of limit_page_length
  std::optional<std::string> as_dict;            // Frappe's sbool: "1", "0", "true", "false", "True", …
};

struct ListLimits {
  std::size_t max_rows = 10000;       // upper bound when the client asks for all rows (0)
  std::size_t max_fields = 100;
  std::size_t max_filters = 50;
  std::size_t max_in_values = 1000;
  std::size_t max_value_bytes = 4096;
};

// The rows a reader may see, as one condition ANDed to the filters (perm::ListScope in SQL).
struct RowScope {
  std::string sql;
  std::vector<std::string> params;
};

struct ListQuery {
  std::string sql;                  // SELECT … FROM `tab…` WHERE … ORDER BY … LIMIT ? OFFSET ?
  std::vector<std::string> params;  // bound in order, as text (MariaDB converts)
  bool as_dict = true;              // false: rows as JSON arrays
  std::vector<std::string> output_names;  // result keys, in SELECT order (aliases applied)
  std::size_t limit = 20;           // rows asked for (the SQL fetches one more when limit came from max_rows)
  bool capped = false;              // the client asked for all rows: more than max_rows is an error
  bool nothing_visible = false;     // every field asked for is hidden from the reader: no rows, no query
};

struct ListError {
  std::string message;    // for the client, e.g. "Field not permitted in query: password"
  std::string parameter;  // which query parameter ("filters", "fields", …)
};

boost::system::result<ListQuery, ListError> build_list_query(const TableMeta& table, const ListRequest& request,
                                                             const ListLimits& limits = {}, const RowScope* scope = nullptr);

// A canonical text of the request for the cache key: two requests that mean the same list (JSON
// whitespace, key order in a filters object, `limit` vs `limit_page_length`, default values
// spelled out or not) give the same text.
boost::system::result<std::string, ListError> canonical_list_request(const ListRequest& request);

// For boost::system::result<T, ListError>::value() (found by argument-dependent lookup).
[[noreturn]] void throw_exception_from_error(const ListError& e, const boost::source_location& loc);

}  // namespace pitstop::origin
