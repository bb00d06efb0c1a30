#pragma once
// A small streaming JSON writer for responses (simdjson 3.0.1 has no builder). Output is compact,
// like Frappe's json.dumps(..., separators=(",", ":")). Strings are always valid JSON whatever the
// input bytes: invalid UTF-8 becomes U+FFFD, control characters are escaped.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pitstop::json {

// Appends `s` as a quoted JSON string.
void append_string(std::string& out, std::string_view s);
// The same without the quotes: for a value going between quotes a template already has.
void append_escaped(std::string& out, std::string_view s);
// Appends a number as Python's repr(float) would print it (Frappe turns Decimal into float):
// 1500.0, 0.1, 1e+16; NaN and infinities, which JSON cannot express, become null.
void append_double(std::string& out, double v);
void append_int(std::string& out, std::int64_t v);
void append_uint(std::string& out, std::uint64_t v);

// Frappe (Python str()) formats of MariaDB temporal values, from their text form:
//   DATE "2026-01-31" stays; DATETIME "2026-01-31 10:00:00.000000" -> "2026-01-31 10:00:00"
//   (fraction kept, 6 digits, only when not zero); TIME "09:30:00" -> "9:30:00" (timedelta).
std::string frappe_datetime(std::string_view mariadb_text);
std::string frappe_time(std::string_view mariadb_text);

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  Writer& begin_object();
  Writer& end_object();
  Writer& begin_array();
  Writer& end_array();
  Writer& key(std::string_view k);

  Writer& value(std::string_view s);
  Writer& value(const char* s) { return value(std::string_view(s)); }
  Writer& value(const std::string& s) { return value(std::string_view(s)); }
  Writer& value(bool b);
  Writer& value(double d);
  Writer& value(std::int64_t i);
  Writer& value(int i) { return value(static_cast<std::int64_t>(i)); }
  Writer& value(std::uint64_t u);
  Writer& null();
  // Inserts an already-encoded JSON value verbatim (a cached fragment).
  Writer& raw(std::string_view json);

  // Shorthand for key(k).value(v).
  template <class V>
  Writer& member(std::string_view k, const V& v) {
    key(k);
    return value(v);
  }

  std::size_t depth() const { return first_.size(); }

 private:
  void before_value();

  std::string& out_;
  // One flag per open container: true until its first element is written.
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace pitstop::json
