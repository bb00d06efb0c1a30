#include "bench/load/workload.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <iterator>

namespace pitstop::load {

namespace dom = simdjson::dom;

namespace {

// Key spaces get a CDF table for Zipf draws; past this the table alone would be 80 MB.
constexpr std::uint64_t kMaxKeyCount = 10'000'000;
constexpr std::size_t kMaxFileBytes = 4 << 20;

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Howard Hinnant's days_from_civil / civil_from_days.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2));
}

std::optional<std::int64_t> parse_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  int y = 0;
  unsigned m = 0, d = 0;
  auto num = [&](std::size_t at, std::size_t n, auto& v) {
    auto r = std::from_chars(s.data() + at, s.data() + at + n, v);
    return r.ec == std::errc{} && r.ptr == s.data() + at + n;
  };
  if (!num(0, 4, y) || !num(5, 2, m) || !num(8, 2, d)) return std::nullopt;
  if (y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1) return std::nullopt;
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDays[m - 1] + (m == 2 && leap ? 1 : 0)) return std::nullopt;
  return days_from_civil(y, m, d);
}

// Characters a request target may carry as they are: RFC 3986 unreserved and reserved ones, and
// '%' so that a template may hold its own escapes. Everything else (space, quotes, brackets,
// braces, non-ASCII) is percent-encoded.
bool target_safe(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'': case '(':
    case ')': case '*': case '+': case ',': case ';': case '=': case ':': case '@': case '/':
    case '?': case '%':
      return true;
    default:
      return false;
  }
}

void append_hex(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '%';
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

// Error reporting with the JSON path: every check returns false after setting the message once.
struct Ctx {
  std::string file;
  std::string error;
  bool fail(const std::string& path, const std::string& what) {
    if (error.empty()) error = file + ": " + path + ": " + what;
    return false;
  }
};

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.append(1, '"').append(s).append(1, '"');
  return out;
}

bool only_keys(Ctx& c, dom::object o, const std::string& path, std::initializer_list<std::string_view> allowed) {
  for (auto field : o) {
    if (std::find(allowed.begin(), allowed.end(), field.key) != allowed.end()) continue;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return c.fail(path, "unknown key " + in_quotes(field.key) + " (expected one of: " + list + ")");
  }
  return true;
}

bool get_object(Ctx& c, dom::element e, const std::string& path, dom::object& out) {
  if (e.get_object().get(out)) return c.fail(path, "expected an object");
  return true;
}

bool get_string(Ctx& c, dom::element e, const std::string& path, std::string& out, std::size_t max = 4096) {
  std::string_view v;
  if (e.get_string().get(v)) return c.fail(path, "expected a string");
  if (v.size() > max) return c.fail(path, "longer than " + std::to_string(max) + " bytes");
  out = std::string(v);
  return true;
}

bool get_uint(Ctx& c, dom::element e, const std::string& path, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
  std::uint64_t v = 0;
  if (e.type() == dom::element_type::DOUBLE) {
    const double d = e.get_double().value_unsafe();
    if (d != std::floor(d) || d < 0 || d > 1e18) return c.fail(path, "expected a whole number");
    v = static_cast<std::uint64_t>(d);
  } else if (e.type() == dom::element_type::INT64) {
    const std::int64_t i = e.get_int64().value_unsafe();
    if (i < 0) return c.fail(path, "must not be negative (got " + std::to_string(i) + ")");
    v = static_cast<std::uint64_t>(i);
  } else if (e.get_uint64().get(v)) {
    return c.fail(path, "expected a whole number");
  }
  if (v < lo || v > hi)
    return c.fail(path, std::to_string(v) + " is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  out = v;
  return true;
}

bool get_number(Ctx& c, dom::element e, const std::string& path, double lo, double hi, double& out) {
  double v = 0;
  if (e.get_double().get(v) || !std::isfinite(v)) return c.fail(path, "expected a number");
  if (v < lo || v > hi) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%g is out of range (%g..%g)", v, lo, hi);
    return c.fail(path, buf);
  }
  out = v;
  return true;
}

bool get_string_list(Ctx& c, dom::element e, const std::string& path, std::vector<std::string>& out, std::size_t min_size) {
  dom::array a;
  if (e.get_array().get(a)) return c.fail(path, "expected an array of strings");
  out.clear();
  std::size_t i = 0;
  for (auto v : a) {
    std::string s;
    if (!get_string(c, v, path + "[" + std::to_string(i++) + "]", s)) return false;
    out.push_back(std::move(s));
  }
  if (out.size() < min_size) return c.fail(path, "needs at least " + std::to_string(min_size) + " entries");
  return true;
}

bool get_format(Ctx& c, dom::element e, const std::string& path, int conversions, Format& out) {
  std::string text, why;
  if (!get_string(c, e, path, text, 200)) return false;
  auto f = Format::parse(text, why);
  if (!f) return c.fail(path, why);
  if (f->conversions() != conversions)
    return c.fail(path, in_quotes(text) + " needs exactly " + std::to_string(conversions) + " %d conversion(s)");
  out = std::move(*f);
  return true;
}

bool parse_key(Ctx& c, Workload& w, std::string_view name, dom::element e, const std::string& path) {
  KeySpace k;
  k.name = std::string(name);
  bool identifier = !name.empty() && name.size() <= 64;
  for (char ch : name) identifier = identifier && (std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) || ch == '_');
  if (!identifier) return c.fail(path, "key names are lower-case letters, digits and _ (up to 64)");
  if (w.key_index(name) >= 0) return c.fail(path, "defined twice");
  dom::object o;
  if (!get_object(c, e, path, o)) return false;
  if (!only_keys(c, o, path, {"format", "count", "values", "dates", "distribution", "s"})) return false;
  dom::element v;
  const bool has_format = !o["format"].get(v), has_values = !o["values"].get(v), has_dates = !o["dates"].get(v);
  if (has_format + has_values + has_dates != 1)
    return c.fail(path, "needs exactly one of \"format\" (with \"count\"), \"values\" or \"dates\"");
  if (has_format) {
    k.kind = KeySpace::Kind::numbered;
    if (!get_format(c, o["format"].value_unsafe(), path + ".format", 1, k.format)) return false;
    dom::element count;
    if (o["count"].get(count)) return c.fail(path, "\"format\" needs a \"count\"");
    const std::string cpath = path + ".count";
    if (count.is_object()) {
      dom::element per;
      if (count.get_object().value_unsafe()[w.dataset].get(per))
        return c.fail(cpath, "no count for dataset " + in_quotes(w.dataset));
      if (!get_uint(c, per, cpath + "." + w.dataset, 1, kMaxKeyCount, k.count)) return false;
    } else if (!get_uint(c, count, cpath, 1, kMaxKeyCount, k.count)) {
      return false;
    }
  } else if (has_values) {
    if (!o["count"].error()) return c.fail(path + ".count", "only keys with a \"format\" take a count");
    k.kind = KeySpace::Kind::values;
    if (!get_string_list(c, o["values"].value_unsafe(), path + ".values", k.values, 1)) return false;
    k.count = k.values.size();
  } else {
    if (!o["count"].error()) return c.fail(path + ".count", "only keys with a \"format\" take a count");
    k.kind = KeySpace::Kind::dates;
    dom::object d;
    const std::string dpath = path + ".dates";
    if (!get_object(c, o["dates"].value_unsafe(), dpath, d) || !only_keys(c, d, dpath, {"from", "to"})) return false;
    std::string from, to;
    dom::element fe, te;
    if (d["from"].get(fe) || d["to"].get(te)) return c.fail(dpath, "needs \"from\" and \"to\" (YYYY-MM-DD)");
    if (!get_string(c, fe, dpath + ".from", from) || !get_string(c, te, dpath + ".to", to)) return false;
    auto f = parse_date(from), t = parse_date(to);
    if (!f) return c.fail(dpath + ".from", in_quotes(from) + " is not a date (YYYY-MM-DD)");
    if (!t) return c.fail(dpath + ".to", in_quotes(to) + " is not a date (YYYY-MM-DD)");
    if (*t < *f) return c.fail(dpath, "\"to\" is before \"from\"");
    k.first_day = *f;
    k.count = static_cast<std::uint64_t>(*t - *f + 1);
  }
  std::string dist = "uniform";
  dom::element de;
  if (!o["distribution"].get(de) && !get_string(c, de, path + ".distribution", dist)) return false;
  if (dist == "zipf") {
    k.zipf = true;
    dom::element se;
    if (!o["s"].get(se) && !get_number(c, se, path + ".s", 0.01, 10, k.s)) return false;
    k.cdf.resize(k.count);
    double sum = 0;
    for (std::uint64_t r = 1; r <= k.count; ++r) {
      sum += std::pow(static_cast<double>(r), -k.s);
      k.cdf[r - 1] = sum;
    }
    for (auto& x : k.cdf) x /= sum;
    k.cdf.back() = 1.0;
  } else if (dist != "uniform") {
    return c.fail(path + ".distribution", in_quotes(dist) + " is not a distribution (uniform or zipf)");
  } else if (!o["s"].error()) {
    return c.fail(path + ".s", "only a zipf distribution takes \"s\"");
  }
  w.keys.push_back(std::move(k));
  return true;
}

// A template: {name} is a placeholder when name is a key identifier; any other brace is text
// (so JSON bodies need no escaping).
bool parse_template(Ctx& c, const Workload& w, std::string_view text, const std::string& path, bool url, Template& out) {
  out.pieces.clear();
  std::string literal;
  auto flush = [&] {
    if (literal.empty()) return;
    Template::Piece p;
    p.literal = std::move(literal);
    out.pieces.push_back(std::move(p));
    literal.clear();
  };
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '{') {
      std::size_t j = i + 1;
      while (j < text.size() && (std::islower(static_cast<unsigned char>(text[j])) || std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '_')) ++j;
      if (j > i + 1 && j < text.size() && text[j] == '}') {
        const std::string_view name = text.substr(i + 1, j - i - 1);
        const int k = w.key_index(name);
        if (k < 0) return c.fail(path, "placeholder {" + std::string(name) + "} names no key in $.keys");
        flush();
        Template::Piece p;
        p.key = k;
        out.pieces.push_back(std::move(p));
        i = j + 1;
        continue;
      }
    }
    const auto ch = static_cast<unsigned char>(text[i]);
    if (url && ch == '#') return c.fail(path, "a request target has no fragment ('#')");
    if (url && !target_safe(ch)) append_hex(literal, ch);
    else literal += text[i];
    ++i;
  }
  flush();
  return true;
}

bool parse_requests(Ctx& c, Workload& w, dom::element e) {
  dom::array a;
  if (e.get_array().get(a)) return c.fail("$.requests", "expected an array");
  std::size_t i = 0;
  double total = 0;
  for (auto item : a) {
    const std::string path = "$.requests[" + std::to_string(i++) + "]";
    dom::object o;
    if (!get_object(c, item, path, o) || !only_keys(c, o, path, {"name", "weight", "method", "path", "body"})) return false;
    RequestSpec r;
    dom::element v;
    if (!o["name"].get(v) && !get_string(c, v, path + ".name", r.name, 100)) return false;
    if (!o["weight"].get(v) && !get_number(c, v, path + ".weight", 0, 1e9, r.weight)) return false;
    r.method = "GET";
    if (!o["method"].get(v) && !get_string(c, v, path + ".method", r.method, 16)) return false;
    static constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    if (std::find(std::begin(kMethods), std::end(kMethods), r.method) == std::end(kMethods))
      return c.fail(path + ".method", in_quotes(r.method) + " is not one of GET, HEAD, POST, PUT, PATCH, DELETE");
    std::string text;
    if (o["path"].get(v)) return c.fail(path, "needs a \"path\"");
    if (!get_string(c, v, path + ".path", text, 8000)) return false;
    if (text.empty() || text[0] != '/') return c.fail(path + ".path", "must start with '/'");
    if (!parse_template(c, w, text, path + ".path", true, r.path)) return false;
    if (!o["body"].get(v)) {
      if (r.method == "GET" || r.method == "HEAD") return c.fail(path + ".body", r.method + " requests take no body");
      if (!get_string(c, v, path + ".body", text, 1 << 20) || !parse_template(c, w, text, path + ".body", false, r.body))
        return false;
    }
    // Names label the per-request figures: a given name must be unique, a derived one is made so.
    const bool named = !r.name.empty();
    if (!named) r.name = std::string(text.substr(0, text.find('?')));
    const auto taken = [&](const std::string& n) {
      return std::any_of(w.requests.begin(), w.requests.end(), [&](const RequestSpec& o) { return o.name == n; });
    };
    if (taken(r.name)) {
      if (named) return c.fail(path + ".name", in_quotes(r.name) + " names another request too");
      r.name += "#" + std::to_string(i - 1);
    }
    total += r.weight;
    w.requests.push_back(std::move(r));
  }
  if (w.requests.empty()) return c.fail("$.requests", "needs at least one request");
  if (total <= 0) return c.fail("$.requests", "the weights add up to 0");
  double acc = 0;
  for (auto& r : w.requests) w.request_cdf.push_back((acc += r.weight) / total);
  w.request_cdf.back() = 1.0;
  return true;
}

bool key_ref(Ctx& c, const Workload& w, dom::object o, const std::string& path, std::string_view field, bool numbered, int& out) {
  dom::element v;
  std::string name;
  if (o[field].get(v)) return c.fail(path, "needs \"" + std::string(field) + "\" (the name of a key in $.keys)");
  if (!get_string(c, v, path + "." + std::string(field), name, 64)) return false;
  out = w.key_index(name);
  if (out < 0) return c.fail(path + "." + std::string(field), in_quotes(name) + " names no key in $.keys");
  if (numbered && w.keys[static_cast<std::size_t>(out)].kind != KeySpace::Kind::numbered)
    return c.fail(path + "." + std::string(field), in_quotes(name) + " must be a numbered key (\"format\" and \"count\")");
  return true;
}

bool parse_writes(Ctx& c, Workload& w, dom::element e) {
  const std::string path = "$.writes";
  dom::object o;
  if (!get_object(c, e, path, o) || !only_keys(c, o, path, {"fraction", "new_order", "status_update", "stock_move"})) return false;
  Writes& wr = w.writes;
  dom::element v;
  if (!o["fraction"].get(v) && !get_number(c, v, path + ".fraction", 0, 1, wr.fraction)) return false;
  if (!o["new_order"].get(v)) {
    const std::string p = path + ".new_order";
    dom::object n;
    if (!get_object(c, v, p, n) || !only_keys(c, n, p, {"weight", "vehicle", "customer", "service_date", "service_type", "status"})) return false;
    NewOrder x;
    x.weight = 1;
    x.status = "Scheduled";
    dom::element f;
    if (!n["weight"].get(f) && !get_number(c, f, p + ".weight", 0, 1e9, x.weight)) return false;
    if (!key_ref(c, w, n, p, "vehicle", true, x.vehicle_key) || !key_ref(c, w, n, p, "customer", true, x.customer_key) ||
        !key_ref(c, w, n, p, "service_date", false, x.date_key))
      return false;
    if (n["service_type"].get(f)) return c.fail(p, "needs \"service_type\"");
    if (!get_string(c, f, p + ".service_type", x.service_type, 140)) return false;
    if (!n["status"].get(f) && !get_string(c, f, p + ".status", x.status, 140)) return false;
    wr.new_order = std::move(x);
  }
  if (!o["status_update"].get(v)) {
    const std::string p = path + ".status_update";
    dom::object n;
    if (!get_object(c, v, p, n) || !only_keys(c, n, p, {"weight", "order", "statuses"})) return false;
    StatusUpdate x;
    x.weight = 1;
    dom::element f;
    if (!n["weight"].get(f) && !get_number(c, f, p + ".weight", 0, 1e9, x.weight)) return false;
    if (!key_ref(c, w, n, p, "order", true, x.order_key)) return false;
    if (n["statuses"].get(f)) return c.fail(p, "needs \"statuses\" (at least two, cycled through)");
    if (!get_string_list(c, f, p + ".statuses", x.statuses, 2)) return false;
    wr.status_update = std::move(x);
  }
  if (!o["stock_move"].get(v)) {
    const std::string p = path + ".stock_move";
    dom::object n;
    if (!get_object(c, v, p, n) ||
        !only_keys(c, n, p, {"weight", "item", "non_stock_every", "bin_format", "warehouses", "max_qty"}))
      return false;
    StockMove x;
    x.weight = 1;
    dom::element f;
    if (!n["weight"].get(f) && !get_number(c, f, p + ".weight", 0, 1e9, x.weight)) return false;
    if (!key_ref(c, w, n, p, "item", true, x.item_key)) return false;
    if (!n["non_stock_every"].get(f) && !get_uint(c, f, p + ".non_stock_every", 0, kMaxKeyCount, x.non_stock_every)) return false;
    if (x.non_stock_every == 1) return c.fail(p + ".non_stock_every", "1 would leave no stock item");
    if (n["bin_format"].get(f)) return c.fail(p, "needs \"bin_format\" (item number, warehouse index: \"BIN-%05d-%d\")");
    if (!get_format(c, f, p + ".bin_format", 2, x.bin_format)) return false;
    if (n["warehouses"].get(f)) return c.fail(p, "needs \"warehouses\" (the bins' warehouses, in index order)");
    if (!get_string_list(c, f, p + ".warehouses", x.warehouses, 1)) return false;
    if (!n["max_qty"].get(f) && !get_uint(c, f, p + ".max_qty", 2, 1'000'000'000, x.max_qty)) return false;
    wr.stock_move = std::move(x);
  }
  if (wr.fraction > 0 && !wr.any()) return c.fail(path + ".fraction", "there are writes to make but no write kind");
  // A write operation brings its own reads (the check, the order fetched before a status
  // update): find the chance of a write per operation that makes `fraction` of all requests
  // writes.
  double weight = 0, requests = 0;
  auto add = [&](double wt, double n) { weight += wt, requests += wt * n; };
  if (wr.new_order) add(wr.new_order->weight, 2);
  if (wr.status_update) add(wr.status_update->weight, 3);
  if (wr.stock_move) add(wr.stock_move->weight, 2);
  if (wr.fraction > 0) {
    if (weight <= 0) return c.fail(path, "the write kinds' weights add up to 0");
    const double per_write = requests / weight;  // requests per write operation
    const double most = 1.0 / per_write;
    if (wr.fraction >= most) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "%g is more than these writes can reach: each brings %.2f requests, so writes are under %.3f of all requests",
                    wr.fraction, per_write, most);
      return c.fail(path + ".fraction", buf);
    }
    wr.op_chance = wr.fraction / (1.0 - wr.fraction * (per_write - 1.0));
  }
  return true;
}

}  // namespace

Rng::Rng(std::uint64_t seed) {
  for (auto& s : s_) s = splitmix(seed);
}

std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

std::uint64_t Rng::below(std::uint64_t n) {
  // Lemire's multiply-shift; the bias (n / 2^64) is far below anything a load test can see.
  __extension__ using u128 = unsigned __int128;
  return static_cast<std::uint64_t>((static_cast<u128>(next()) * n) >> 64);
}

std::uint64_t Rng::between(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }

std::optional<Format> Format::parse(std::string_view text, std::string& error) {
  Format f;
  std::string literal;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      literal += text[i];
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '%') {
      literal += '%';
      ++i;
      continue;
    }
    Piece p;
    std::size_t j = i + 1;
    if (j < text.size() && text[j] == '0') p.zero = true, ++j;
    int width = 0;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j])) && width < 100) width = width * 10 + (text[j++] - '0');
    if (j >= text.size() || text[j] != 'd' || width >= 20) {
      error = "\"" + std::string(text) + "\": only %d, %Nd and %0Nd (N < 20) conversions and %% are understood";
      return std::nullopt;
    }
    if (!literal.empty()) {
      Piece l;
      l.literal = std::move(literal);
      f.pieces_.push_back(std::move(l));
      literal.clear();
    }
    p.width = width;
    f.pieces_.push_back(std::move(p));
    ++f.conversions_;
    i = j;
  }
  if (!literal.empty()) {
    Piece l;
    l.literal = std::move(literal);
    f.pieces_.push_back(std::move(l));
  }
  return f;
}

void Format::append(std::string& out, const std::uint64_t* args) const {
  for (const auto& p : pieces_) {
    if (p.width < 0) {
      out += p.literal;
      continue;
    }
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, *args++);
    const auto n = static_cast<int>(r.ptr - buf);
    if (n < p.width) out.append(static_cast<std::size_t>(p.width - n), p.zero ? '0' : ' ');
    out.append(buf, r.ptr);
  }
}

std::uint64_t KeySpace::draw(Rng& rng) const {
  if (!zipf) return 1 + rng.below(count);
  const double u = rng.uniform();
  return 1 + static_cast<std::uint64_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
}

void KeySpace::append_value(std::string& out, std::uint64_t rank) const {
  switch (kind) {
    case Kind::numbered:
      format.append(out, rank);
      break;
    case Kind::values:
      out += values[rank - 1];
      break;
    case Kind::dates: {
      int y;
      unsigned m, d;
      civil_from_days(first_day + static_cast<std::int64_t>(rank) - 1, y, m, d);
      char buf[40];
      std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", y, m, d);
      out += buf;
      break;
    }
  }
}

std::size_t Workload::pick_request(Rng& rng) const {
  const double u = rng.uniform();
  auto it = std::upper_bound(request_cdf.begin(), request_cdf.end(), u);
  if (it == request_cdf.end()) --it;
  return static_cast<std::size_t>(it - request_cdf.begin());
}

int Workload::key_index(std::string_view name) const {
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (keys[i].name == name) return static_cast<int>(i);
  return -1;
}

void append_url_component(std::string& out, std::string_view v) {
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out += ch;
    else append_hex(out, c);
  }
}

bool load_workload(const std::string& file, const std::string& dataset, Workload& w, std::string& error) {
  Ctx c{file, {}};
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = file + ": cannot be read";
    return false;
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxFileBytes) {
      error = file + ": larger than " + std::to_string(kMaxFileBytes >> 20) + " MiB; not a workload";
      return false;
    }
  }
  if (in.bad()) {
    error = file + ": cannot be read";
    return false;
  }
  dom::parser parser;
  dom::element root;
  if (auto err = parser.parse(text).get(root)) {
    error = file + ": not valid JSON: " + simdjson::error_message(err);
    return false;
  }
  w = Workload{};
  w.file = file;
  w.dataset = dataset;
  dom::object o;
  if (!get_object(c, root, "$", o) ||
      !only_keys(c, o, "$", {"name", "description", "mode", "users", "threads", "connections", "rate", "think_ms",
                             "duration_s", "warmup_s", "timeout_ms", "seed", "keys", "requests", "writes"})) {
    error = c.error;
    return false;
  }
  dom::element v;
  auto ok = [&]() -> bool {
    if (o["name"].get(v)) return c.fail("$", "needs a \"name\"");
    if (!get_string(c, v, "$.name", w.name, 100)) return false;
    if (!o["description"].get(v) && !get_string(c, v, "$.description", w.description)) return false;
    if (!o["mode"].get(v) && !get_string(c, v, "$.mode", w.mode, 16)) return false;
    if (w.mode != "closed" && w.mode != "open") return c.fail("$.mode", in_quotes(w.mode) + " is not a mode (closed or open)");
    if (!o["users"].get(v) && !get_uint(c, v, "$.users", 1, 100000, w.users)) return false;
    if (!o["threads"].get(v) && !get_uint(c, v, "$.threads", 1, 64, w.threads)) return false;
    if (!o["connections"].get(v) && !get_uint(c, v, "$.connections", 1, 10000, w.connections)) return false;
    if (!o["rate"].get(v) && !get_number(c, v, "$.rate", 0.001, 10'000'000, w.rate)) return false;
    if (w.mode == "open" && w.rate <= 0) return c.fail("$.rate", "an open-loop workload needs a rate (requests/s)");
    if (!o["think_ms"].get(v) && !get_uint(c, v, "$.think_ms", 0, 600000, w.think_ms)) return false;
    if (!o["duration_s"].get(v) && !get_number(c, v, "$.duration_s", 0.001, 3600, w.duration_s)) return false;
    if (!o["warmup_s"].get(v) && !get_number(c, v, "$.warmup_s", 0, 3600, w.warmup_s)) return false;
    if (!o["timeout_ms"].get(v) && !get_uint(c, v, "$.timeout_ms", 1, 600000, w.timeout_ms)) return false;
    if (!o["seed"].get(v) && !get_uint(c, v, "$.seed", 0, UINT64_MAX, w.seed)) return false;
    if (!o["keys"].get(v)) {
      dom::object keys;
      if (!get_object(c, v, "$.keys", keys)) return false;
      for (auto field : keys)
        if (!parse_key(c, w, field.key, field.value, "$.keys." + std::string(field.key))) return false;
    }
    if (o["requests"].get(v)) return c.fail("$", "needs \"requests\"");
    if (!parse_requests(c, w, v)) return false;
    if (!o["writes"].get(v) && !parse_writes(c, w, v)) return false;
    return true;
  }();
  if (!ok) error = c.error;
  return ok;
}

}  // namespace pitstop::load
