// Frappe's value conversions (see frappe_values.hpp). The Python behaviour each one mirrors is
// named at the function.
#include "proxy/origin/frappe_values.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>

#include "proxy/json/writer.hpp"

namespace pitstop::origin::frappe {
namespace {

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text helpers

std::string_view trim_ascii(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

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

// ---------------------------------------------------------------------------------------------
// Numbers, dates and times as Frappe converts them

std::string py_float_repr(double d) {
  std::string out;
  json::append_double(out, d);  // Python's repr(float), which is what Frappe splices
  return out;
}

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

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// Reads min_digits..max_digits decimal digits.
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

}  // namespace pitstop::origin::frappe
