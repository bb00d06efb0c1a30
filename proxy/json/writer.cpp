#include "proxy/json/writer.hpp"

#include <charconv>
#include <cmath>
#include <cstring>

namespace pitstop::json {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_u_escape(std::string& out, unsigned cp) {
  char buf[6] = {'\\', 'u', kHex[(cp >> 12) & 0xF], kHex[(cp >> 8) & 0xF], kHex[(cp >> 4) & 0xF],
                 kHex[cp & 0xF]};
  out.append(buf, 6);
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid (overlong forms,
// surrogates and code points past U+10FFFF are invalid, as in RFC 3629).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const std::size_t left = s.size() - i;
  auto cont = [&](std::size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return (cont(1) && b(1) >= 0xA0 && cont(2)) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return (cont(1) && cont(2)) ? 3 : 0;
  if (c == 0xED) return (cont(1) && b(1) <= 0x9F && cont(2)) ? 3 : 0;
  if (c == 0xF0) return (cont(1) && b(1) >= 0x90 && cont(2) && cont(3)) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return (cont(1) && cont(2) && cont(3)) ? 4 : 0;
  if (c == 0xF4) return (cont(1) && b(1) <= 0x8F && cont(2) && cont(3)) ? 4 : 0;
  return 0;
}

}  // namespace

void append_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  append_escaped(out, s);
  out.push_back('"');
}

void append_escaped(std::string& out, std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    // Copy the longest run that needs no escaping in one go.
    std::size_t run = i;
    while (run < s.size()) {
      unsigned char c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      std::size_t n = utf8_sequence(s, i);
      if (n == 0) {
        out.append("\\ufffd");
        ++i;
      } else if (n == 3 && c == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
                 (static_cast<unsigned char>(s[i + 2]) == 0xA8 ||
                  static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
        // U+2028/U+2029 are valid JSON but end a line in JavaScript source.
        append_u_escape(out, static_cast<unsigned char>(s[i + 2]) == 0xA8 ? 0x2028 : 0x2029);
        i += 3;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default: append_u_escape(out, c); break;
    }
    ++i;
  }
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out.append("null");
    return;
  }
  // Python's repr: shortest round-trip digits, scientific when the decimal exponent of that
  // shortest form is < -4 or >= 16, otherwise fixed with at least one fractional digit.
  char sci[64];
  auto rs = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific);
  std::string_view s(sci, static_cast<std::size_t>(rs.ptr - sci));
  int exp10 = 0;
  auto e = s.find('e');
  std::from_chars(s.data() + e + (s[e + 1] == '+' ? 2 : 1), s.data() + s.size(), exp10);
  if (v != 0 && (exp10 < -4 || exp10 >= 16)) {
    out.append(s);  // "1e+16", "1.5e-05": the same spelling as Python
    return;
  }
  char fix[400];
  auto rf = std::to_chars(fix, fix + sizeof fix, v, std::chars_format::fixed);
  std::string_view f(fix, static_cast<std::size_t>(rf.ptr - fix));
  out.append(f);
  if (f.find('.') == std::string_view::npos) out.append(".0");
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

std::string frappe_datetime(std::string_view t) {
  auto dot = t.find('.');
  if (dot == std::string_view::npos) return std::string(t);
  std::string_view frac = t.substr(dot + 1);
  if (frac.find_first_not_of('0') == std::string_view::npos) return std::string(t.substr(0, dot));
  std::string out(t.substr(0, dot + 1));
  out.append(frac.substr(0, 6));
  while (out.size() < dot + 7) out.push_back('0');
  return out;
}

std::string frappe_time(std::string_view t) {
  // MariaDB TIME is [-]HHH:MM:SS[.ffffff]; Python's str(timedelta) is "[D day[s], ]H:MM:SS[.ffffff]".
  // Negative times are kept with an explicit sign rather than Python's "-1 day, 23:59:59" quirk:
  // the ERP never stores them.
  std::string out;
  if (!t.empty() && t.front() == '-') {
    out.push_back('-');
    t.remove_prefix(1);
  }
  auto colon = t.find(':');
  if (colon == std::string_view::npos) return out.append(t);
  long hours = 0;
  std::from_chars(t.data(), t.data() + colon, hours);
  long days = hours / 24;
  hours %= 24;
  if (days > 0) {
    out += std::to_string(days);
    out += days == 1 ? " day, " : " days, ";
  }
  out += std::to_string(hours);
  out += frappe_datetime(t.substr(colon));  // ":MM:SS" plus Python's fraction rule
  return out;
}

void Writer::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

Writer& Writer::begin_object() {
  before_value();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}

Writer& Writer::end_object() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}

Writer& Writer::begin_array() {
  before_value();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}

Writer& Writer::end_array() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}

Writer& Writer::key(std::string_view k) {
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
  append_string(out_, k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

Writer& Writer::value(std::string_view s) {
  before_value();
  append_string(out_, s);
  return *this;
}

Writer& Writer::value(bool b) {
  before_value();
  out_.append(b ? "true" : "false");
  return *this;
}

Writer& Writer::value(double d) {
  before_value();
  append_double(out_, d);
  return *this;
}

Writer& Writer::value(std::int64_t i) {
  before_value();
  append_int(out_, i);
  return *this;
}

Writer& Writer::value(std::uint64_t u) {
  before_value();
  append_uint(out_, u);
  return *this;
}

Writer& Writer::null() {
  before_value();
  out_.append("null");
  return *this;
}

Writer& Writer::raw(std::string_view json) {
  before_value();
  out_.append(json);
  return *this;
}

}  // namespace pitstop::json
