#include "proxy/rules/rules.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>

namespace pitstop::rules {

namespace fs = std::filesystem;
using config::ConfigError;

bool TagTemplate::uses_result() const {
  return std::any_of(pieces.begin(), pieces.end(), [](const Piece& p) { return p.kind == Piece::Kind::result; });
}

namespace {

// ---------------------------------------------------------------------------------------------
// Text helpers

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding as werkzeug does it: a '%' not followed by two hex digits stays as it is.
std::string percent_decode(std::string_view in, bool plus_is_space) {
  // Most paths and values have nothing to decode: one copy.
  if (in.find('%') == std::string_view::npos && (!plus_is_space || in.find('+') == std::string_view::npos)) return std::string(in);
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  // ASCII eight bytes at a time.
  while (i + 8 <= s.size()) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if (w & 0x8080808080808080ULL) break;
    i += 8;
  }
  while (i < s.size()) {
    unsigned char c = b(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    unsigned cp = 0;
    if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07;
    else return false;
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      if ((b(i + k) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b(i + k) & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

bool valid_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u})
    if (s[i] < '0' || s[i] > '9') return false;
  int y = std::stoi(std::string(s.substr(0, 4)));
  int m = std::stoi(std::string(s.substr(5, 2)));
  int d = std::stoi(std::string(s.substr(8, 2)));
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  int days = kDays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 1 : 0);
  return d <= days;
}

http::Problem validation(std::string message) { return {417, "ValidationError", std::move(message)}; }

// ---------------------------------------------------------------------------------------------
// Loading

struct Loader {
  std::string file;
  const config::Config& cfg;

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw ConfigError(file + ": " + where + ": " + what);
  }

  void check_keys(simdjson::dom::object obj, const std::string& where, std::initializer_list<std::string_view> known) const {
    for (auto field : obj) {
      if (std::find(known.begin(), known.end(), field.key) != known.end()) continue;
      std::string list;
      for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(where + "." + std::string(field.key), "unknown key; known keys here: " + list);
    }
  }

  simdjson::dom::object object_at(simdjson::dom::element e, const std::string& where) const {
    simdjson::dom::object o;
    if (e.get(o)) fail(where, "expected an object");
    return o;
  }

  std::string string_at(simdjson::dom::element e, const std::string& where) const {
    std::string_view s;
    if (e.get(s)) fail(where, "expected a string");
    return std::string(s);
  }

  std::vector<std::string> strings_at(simdjson::dom::element e, const std::string& where) const {
    simdjson::dom::array a;
    if (e.get(a)) fail(where, "expected an array of strings");
    std::vector<std::string> out;
    std::size_t i = 0;
    for (auto item : a) out.push_back(string_at(item, where + "[" + std::to_string(i++) + "]"));
    return out;
  }
};

std::string method_name(http::Method m) {
  switch (m) {
    case http::Method::get: return "GET";
    case http::Method::head: return "HEAD";
    case http::Method::post: return "POST";
    case http::Method::put: return "PUT";
    case http::Method::patch: return "PATCH";
    case http::Method::delete_: return "DELETE";
    case http::Method::options: return "OPTIONS";
    default: return "?";
  }
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 1;  // after the leading '/'
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(path.substr(start));
      break;
    }
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool valid_capture_name(std::string_view n) {
  return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9'); });
}

}  // namespace

bool parse_tag_template(std::string_view text, TagTemplate& out, std::string& why) {
  out = {};
  out.source = std::string(text);
  std::size_t i = 0;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) out.pieces.push_back({TagTemplate::Piece::Kind::literal, literal, {}});
    literal.clear();
  };
  while (i < text.size()) {
    char c = text[i];
    if (c == '}') {
      why = "a '}' without its '{'";
      return false;
    }
    if (c != '{') {
      literal.push_back(c);
      ++i;
      continue;
    }
    auto close = text.find('}', i);
    if (close == std::string_view::npos) {
      why = "a '{' without its '}'";
      return false;
    }
    std::string_view ref = text.substr(i + 1, close - i - 1);
    flush();
    if (ref.substr(0, 1) == "$") {
      // $.a.b[*].c
      TagTemplate::Piece p{TagTemplate::Piece::Kind::result, std::string(ref), {}};
      std::size_t k = 1;
      while (k < ref.size()) {
        if (ref[k] == '.') {
          std::size_t end = k + 1;
          while (end < ref.size() && ref[end] != '.' && ref[end] != '[') ++end;
          if (end == k + 1) {
            why = "an empty field name in " + std::string(ref);
            return false;
          }
          p.path.emplace_back(ref.substr(k + 1, end - k - 1));
          k = end;
        } else if (ref.substr(k, 3) == "[*]") {
          p.path.emplace_back("*");
          k += 3;
        } else {
          why = "expected .field or [*] in " + std::string(ref);
          return false;
        }
      }
      if (p.path.empty()) {
        why = "{$} names the whole answer; name a field, e.g. {$.message.customer}";
        return false;
      }
      out.pieces.push_back(std::move(p));
    } else {
      if (!valid_capture_name(ref)) {
        why = "{" + std::string(ref) + "} is not a parameter name (a-z, 0-9, _) or a {$.path}";
        return false;
      }
      out.pieces.push_back({TagTemplate::Piece::Kind::value, std::string(ref), {}});
    }
    i = close + 1;
  }
  flush();
  if (out.pieces.empty()) {
    why = "the tag is empty";
    return false;
  }
  return true;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Loading, one step per part of the file

std::string read_file(const std::string& path, const config::Config& cfg) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot be read (the \"rules\" setting of " + cfg.source + " names it)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string queries_dir_at(const Loader& L, simdjson::dom::object root) {
  std::string qdir = "queries";
  if (auto e = root["queries_dir"]; !e.error()) qdir = L.string_at(e.value_unsafe(), "$.queries_dir");
  fs::path qpath(qdir);
  if (qpath.is_relative()) qpath = fs::path(L.file).parent_path() / qpath;
  return qpath.lexically_normal().string();
}

Naming naming_at(const Loader& L, simdjson::dom::element e, const std::string& where) {
  std::string naming = L.string_at(e, where);
  if (naming == "hash") return {Naming::Kind::hash, {}};
  if (naming == "prompt") return {Naming::Kind::prompt, {}};
  if (naming.rfind("field:", 0) == 0 && naming.size() > 6) return {Naming::Kind::field, naming.substr(6)};
  if (naming.rfind("series:", 0) == 0 && naming.find('#') != std::string::npos) return {Naming::Kind::series, naming.substr(7)};
  L.fail(where, "expected \"hash\", \"prompt\", \"field:<field>\" or \"series:<PREFIX-.YYYY.-.#####>\"");
}

std::vector<std::pair<std::string, std::string>> string_map_at(const Loader& L, simdjson::dom::element e, const std::string& where) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto field : L.object_at(e, where)) out.emplace_back(std::string(field.key), L.string_at(field.value, where + "." + std::string(field.key)));
  return out;
}

Doctype doctype_at(const Loader& L, std::string_view key, simdjson::dom::element e) {
  std::string name(key);
  std::string where = "$.doctypes[\"" + name + "\"]";
  if (name.empty() || name.size() > 61 || name.find('`') != std::string::npos)
    L.fail(where, "a doctype name is 1..61 characters without backticks");
  auto obj = L.object_at(e, where);
  L.check_keys(obj, where, {"tags", "children", "parent", "naming", "mandatory", "links", "permissions", "is_submittable", "allow_on_submit"});
  Doctype d;
  d.name = name;
  d.table = "tab" + name;
  if (auto t = obj["tags"]; !t.error()) {
    auto tags = L.strings_at(t.value_unsafe(), where + ".tags");
    for (std::size_t i = 0; i < tags.size(); ++i) {
      TagTemplate tt;
      std::string why;
      if (!parse_tag_template(tags[i], tt, why)) L.fail(where + ".tags[" + std::to_string(i) + "]", why);
      if (tt.uses_result()) L.fail(where + ".tags[" + std::to_string(i) + "]", "row tags name columns, e.g. {customer}, not {$…}");
      d.row_tags.push_back(std::move(tt));
    }
  }
  if (auto p = obj["parent"]; !p.error()) d.parent = L.string_at(p.value_unsafe(), where + ".parent");
  if (auto n = obj["naming"]; !n.error()) d.naming = naming_at(L, n.value_unsafe(), where + ".naming");
  if (auto m = obj["mandatory"]; !m.error()) d.mandatory = L.strings_at(m.value_unsafe(), where + ".mandatory");
  if (auto sb = obj["is_submittable"]; !sb.error()) {
    bool b = false;
    if (sb.value_unsafe().get(b)) L.fail(where + ".is_submittable", "expected true or false");
    d.is_submittable = b;
  }
  if (auto a = obj["allow_on_submit"]; !a.error()) d.allow_on_submit = L.strings_at(a.value_unsafe(), where + ".allow_on_submit");
  if (auto pm = obj["permissions"]; !pm.error()) {
    auto perms = L.object_at(pm.value_unsafe(), where + ".permissions");
    L.check_keys(perms, where + ".permissions", {"read", "create", "write", "delete", "submit", "cancel"});
    for (auto perm : perms) d.permissions[std::string(perm.key)] = L.strings_at(perm.value, where + ".permissions." + std::string(perm.key));
  }
  if (auto l = obj["links"]; !l.error()) d.links = string_map_at(L, l.value_unsafe(), where + ".links");
  if (auto c = obj["children"]; !c.error()) d.children = string_map_at(L, c.value_unsafe(), where + ".children");
  return d;
}

// What one doctype says of others: they exist and agree.
void check_doctypes(const Loader& L, const std::map<std::string, Doctype, std::less<>>& doctypes) {
  for (const auto& [name, d] : doctypes) {
    std::string where = "$.doctypes[\"" + name + "\"]";
    if (!d.parent.empty() && !doctypes.count(d.parent)) L.fail(where + ".parent", "names \"" + d.parent + "\", which is not in $.doctypes; add it");
    if (!d.parent.empty() && d.is_submittable) L.fail(where + ".is_submittable", "a child table follows its parent's docstatus; remove it");
    if (!d.allow_on_submit.empty() && !d.is_submittable)
      L.fail(where + ".allow_on_submit", "only a submittable doctype (\"is_submittable\": true) has fields editable after submission");
    for (const auto& [field, target] : d.links)
      if (!doctypes.count(target))
        L.fail(where + ".links." + field, "names \"" + target + "\", which is not in $.doctypes; add it or remove the link");
    for (const auto& [field, child] : d.children) {
      auto it = doctypes.find(child);
      if (it == doctypes.end())
        L.fail(where + ".children." + field, "names \"" + child + "\", which is not in $.doctypes; add it with \"parent\": \"" + name + "\"");
      if (it->second.parent != name) L.fail(where + ".children." + field, "\"" + child + "\" must declare \"parent\": \"" + name + "\"");
    }
  }
}

// One rule being read: its JSON object and where it is, for every error message.
struct RuleReader {
  const Loader& L;
  simdjson::dom::object obj;
  std::string where;
  std::string queries_dir;
  Rule r;
  std::set<std::string> captures;
  std::string method;

  void read_method() {
    method = "GET";
    if (auto m = obj["method"]; !m.error()) method = L.string_at(m.value_unsafe(), where + ".method");
    if (method == "GET") r.method = http::Method::get;
    else if (method == "POST") r.method = http::Method::post;
    else if (method == "PUT") r.method = http::Method::put;
    else if (method == "DELETE") r.method = http::Method::delete_;
    else L.fail(where + ".method", "expected GET, POST, PUT or DELETE (got \"" + method + "\")");
  }

  void read_path() {
    if (auto p = obj["path"]; !p.error()) r.path = L.string_at(p.value_unsafe(), where + ".path");
    if (r.path.empty() || r.path[0] != '/' || r.path.find('?') != std::string::npos)
      L.fail(where + ".path", "expected a path template starting with '/', without a query (e.g. \"/api/resource/{doctype}/{name*}\")");
    if (r.path.size() > 1 && r.path.back() == '/') r.path.pop_back();
    for (auto seg : split_path(r.path)) {
      if (!r.segments.empty() && r.segments.back().kind == Rule::Segment::Kind::rest)
        L.fail(where + ".path", "a {name*} capture must be the last segment");
      if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
        std::string_view inner = seg.substr(1, seg.size() - 2);
        bool rest = !inner.empty() && inner.back() == '*';
        if (rest) inner.remove_suffix(1);
        if (!valid_capture_name(inner)) L.fail(where + ".path", "bad capture {" + std::string(inner) + "} (a-z, 0-9, _)");
        if (!captures.insert(std::string(inner)).second) L.fail(where + ".path", "capture {" + std::string(inner) + "} appears twice");
        r.segments.push_back({rest ? Rule::Segment::Kind::rest : Rule::Segment::Kind::capture, std::string(inner)});
      } else {
        if (seg.find_first_of("{}") != std::string_view::npos)
          L.fail(where + ".path", "a segment is either literal or one {capture}: \"" + std::string(seg) + "\"");
        r.segments.push_back({Rule::Segment::Kind::literal, std::string(seg)});
      }
    }
  }

  Param param_at(std::string_view name, simdjson::dom::element e) const {
    std::string pw = where + ".params." + std::string(name);
    Param prm;
    prm.name = std::string(name);
    if (!valid_capture_name(prm.name)) L.fail(pw, "parameter names use a-z, 0-9 and _");
    if (captures.count(prm.name)) L.fail(pw, "a path capture has the same name");
    auto po = L.object_at(e, pw);
    L.check_keys(po, pw, {"type", "required", "max_length"});
    if (auto t = po["type"]; !t.error()) {
      auto type = L.string_at(t.value_unsafe(), pw + ".type");
      if (type == "string") prm.type = ParamType::string;
      else if (type == "date") prm.type = ParamType::date;
      else if (type == "int") prm.type = ParamType::integer;
      else L.fail(pw + ".type", "expected \"string\", \"date\" or \"int\" (got \"" + type + "\")");
    }
    if (auto req = po["required"]; !req.error()) {
      bool b;
      if (req.get(b)) L.fail(pw + ".required", "expected true or false");
      prm.required = b;
    }
    if (auto ml = po["max_length"]; !ml.error()) {
      int64_t v;
      if (ml.get(v) || v < 1 || v > 65535) L.fail(pw + ".max_length", "expected an integer 1..65535");
      prm.max_length = static_cast<std::size_t>(v);
    }
    return prm;
  }

  void read_params() {
    if (auto p = obj["params"]; !p.error())
      for (auto field : L.object_at(p.value_unsafe(), where + ".params")) r.params.push_back(param_at(field.key, field.value));
  }

  void read_category_and_scope(const config::Config& cfg) {
    r.category = cfg.cache.default_category;
    if (auto c = obj["category"]; !c.error()) r.category = L.string_at(c.value_unsafe(), where + ".category");
    if (!cfg.cache.categories.count(r.category)) {
      std::string list;
      for (const auto& [k, v] : cfg.cache.categories) list += (list.empty() ? "" : ", ") + k;
      L.fail(where + ".category", "unknown category \"" + r.category + "\"; use one of " + list + " or add it to cache.categories in " + cfg.source);
    }
    std::string scope = "user";
    if (auto s = obj["scope"]; !s.error()) scope = L.string_at(s.value_unsafe(), where + ".scope");
    if (scope == "shared") r.scope = Scope::shared;
    else if (scope == "user") r.scope = Scope::user;
    else L.fail(where + ".scope", "expected \"shared\" or \"user\" (got \"" + scope + "\")");
  }

  void read_access() {
    if (auto ro = obj["roles"]; !ro.error()) r.roles = L.strings_at(ro.value_unsafe(), where + ".roles");
    if (auto rv = obj["reveals"]; !rv.error()) {
      r.reveals = L.strings_at(rv.value_unsafe(), where + ".reveals");
      for (const auto& d : r.reveals)
        if (d.empty() || d.size() > 140) L.fail(where + ".reveals", "expected doctype names (1 to 140 characters), as the ERP names them");
    }
    if (auto rl = obj["rate_limit"]; !rl.error()) {
      auto o = L.object_at(rl.value_unsafe(), where + ".rate_limit");
      L.check_keys(o, where + ".rate_limit", {"limit", "window_s", "burst"});
      config::RateLimit q;
      auto number = [&](const char* k, std::int64_t min, std::int64_t max, std::int64_t fallback) {
        auto e = o[k];
        if (e.error()) return fallback;
        std::int64_t v;
        if (e.get(v) || v < min || v > max) L.fail(where + ".rate_limit." + k, "expected an integer " + std::to_string(min) + ".." + std::to_string(max));
        return v;
      };
      q.limit = number("limit", 1, 1LL << 40, 0);
      if (q.limit == 0) L.fail(where + ".rate_limit.limit", "is required (requests per window)");
      q.window = std::chrono::seconds(number("window_s", 1, 86400, 60));
      q.burst = number("burst", 0, 1LL << 40, 0);
      r.rate_limit = q;
    }
    if (auto g = obj["allow_guest"]; !g.error()) {
      bool b;
      if (g.get(b)) L.fail(where + ".allow_guest", "expected true or false");
      r.allow_guest = b;
    }
  }

  void read_resource_kind(const std::string& kind) {
    if (!captures.count("doctype")) L.fail(where + ".path", "a resource rule needs a {doctype} capture");
    struct K {
      const char* name;
      OriginKind kind;
      http::Method method;
      bool named;
    };
    static const K kinds[] = {{"doc", OriginKind::resource_doc, http::Method::get, true},
                              {"list", OriginKind::resource_list, http::Method::get, false},
                              {"insert", OriginKind::resource_insert, http::Method::post, false},
                              {"update", OriginKind::resource_update, http::Method::put, true},
                              {"delete", OriginKind::resource_delete, http::Method::delete_, true}};
    const K* k = nullptr;
    for (const auto& candidate : kinds)
      if (kind == candidate.name) k = &candidate;
    if (!k) L.fail(where + ".origin.resource", "expected \"doc\", \"list\", \"insert\", \"update\" or \"delete\" (got \"" + kind + "\")");
    if (k->method != r.method) L.fail(where + ".method", std::string("a resource ") + k->name + " rule is " + method_name(k->method));
    if (k->named && !captures.count("name")) L.fail(where + ".path", std::string("a resource ") + k->name + " rule needs a {name} or {name*} capture");
    r.kind = k->kind;
  }

  void read_http_origin(simdjson::dom::element spec) {
    L.check_keys(L.object_at(spec, where + ".origin.http"), where + ".origin.http", {});
    if (!L.cfg.upstream.enabled())
      L.fail(where + ".origin.http", "the ERP is asked, but upstream.url is not set in " + L.cfg.source + "; set it (or PITSTOP_UPSTREAM_URL)");
    // Writes: forwarded, then what they changed invalidated; that needs the doctype (its row tags).
    if (r.method != http::Method::get) {
      if (!captures.count("doctype"))
        L.fail(where + ".path", "a write with the http origin needs a {doctype} capture (e.g. /api/resource/{doctype}/{name*})");
      if (r.method != http::Method::post && !captures.count("name"))
        L.fail(where + ".path", "an update or delete with the http origin needs a {name} or {name*} capture");
    }
    r.kind = OriginKind::http;
  }

  void read_origin() {
    simdjson::dom::object origin;
    if (auto o = obj["origin"]; o.error() || o.get(origin))
      L.fail(where + ".origin", "expected {\"sql\": \"<query>\"}, {\"resource\": \"doc\"|\"list\"} or {\"http\": {}}");
    L.check_keys(origin, where + ".origin", {"sql", "resource", "http"});
    if (auto h = origin["http"]; !h.error()) return read_http_origin(h.value_unsafe());
    if (auto s = origin["sql"]; !s.error()) {
      r.kind = OriginKind::sql;
      if (r.method != http::Method::get) L.fail(where + ".method", "named queries answer GET only");
      r.query = L.string_at(s.value_unsafe(), where + ".origin.sql");
      if (!valid_capture_name(r.query)) L.fail(where + ".origin.sql", "query names use a-z, 0-9 and _");
      auto file = fs::path(queries_dir) / (r.query + ".sql");
      if (!fs::exists(file)) L.fail(where + ".origin.sql", "no query file " + file.string() + "; create it or fix the name");
    } else if (auto res = origin["resource"]; !res.error()) {
      read_resource_kind(L.string_at(res.value_unsafe(), where + ".origin.resource"));
    } else {
      L.fail(where + ".origin", "expected {\"sql\": \"<query>\"} or {\"resource\": \"doc\"|\"list\"}");
    }
  }

  void check_tag_piece(const TagTemplate::Piece& piece, const std::string& tw) const {
    if (piece.kind != TagTemplate::Piece::Kind::value) return;
    bool known = captures.count(piece.text) || std::any_of(r.params.begin(), r.params.end(), [&](const Param& p) { return p.name == piece.text; });
    if (!known) {
      std::string list;
      for (const auto& c : captures) list += (list.empty() ? "" : ", ") + c;
      for (const auto& p : r.params) list += (list.empty() ? "" : ", ") + p.name;
      L.fail(tw, "{" + piece.text + "} is not a parameter or capture of this rule (it has: " + (list.empty() ? std::string("none") : list) +
                     "); fix the name or add the parameter");
    }
    auto p = std::find_if(r.params.begin(), r.params.end(), [&](const Param& x) { return x.name == piece.text; });
    if (p != r.params.end() && !p->required) L.fail(tw, "{" + piece.text + "} is an optional parameter; tags may only use required ones");
    // The ERP finds a row for many spellings of its name, and its answer does not say which was
    // asked for: a tag must name the row as the answer does, or a write would miss the entry.
    const bool text = captures.count(piece.text) ? piece.text != "doctype" : (p != r.params.end() && p->type == ParamType::string);
    if (r.kind == OriginKind::http && text)
      L.fail(tw, "{" + piece.text + "} is text the client spelled; with the http origin, tag from the answer instead (e.g. {$.message.name})");
  }

  void read_tags() {
    auto t = obj["tags"];
    if (t.error()) return;
    auto tags = L.strings_at(t.value_unsafe(), where + ".tags");
    for (std::size_t i = 0; i < tags.size(); ++i) {
      std::string tw = where + ".tags[" + std::to_string(i) + "]";
      TagTemplate tt;
      std::string why;
      if (!parse_tag_template(tags[i], tt, why)) L.fail(tw, why);
      for (const auto& piece : tt.pieces) check_tag_piece(piece, tw);
      r.tags.push_back(std::move(tt));
    }
  }

  // The same method and path shape twice would make one rule unreachable.
  std::string shape() const {
    std::string s = method;
    for (const auto& seg : r.segments)
      s += "/" + (seg.kind == Rule::Segment::Kind::literal ? seg.text : (seg.kind == Rule::Segment::Kind::rest ? "{*}" : "{}"));
    return s;
  }
};

Rule rule_at(const Loader& L, simdjson::dom::element item, std::size_t index, const std::string& queries_dir, std::set<std::string>& names,
             std::string& shape) {
  const std::string where = "$.rules[" + std::to_string(index) + "]";
  RuleReader R{L, L.object_at(item, where), where, queries_dir, {}, {}, {}};
  R.r.index = index;
  if (auto n = R.obj["name"]; !n.error()) R.r.name = L.string_at(n.value_unsafe(), R.where + ".name");
  if (R.r.name.empty() || !valid_capture_name(R.r.name)) L.fail(R.where + ".name", "each rule needs a \"name\" of a-z, 0-9 and _");
  R.where += " (" + R.r.name + ")";
  L.check_keys(R.obj, R.where, {"name", "method", "path", "params", "category", "scope", "tags", "origin", "allow_guest", "roles", "rate_limit", "reveals"});
  if (!names.insert(R.r.name).second) L.fail(R.where + ".name", "another rule has this name; names must be unique");
  R.read_method();
  R.read_path();
  R.read_params();
  R.read_category_and_scope(L.cfg);
  R.read_access();
  R.read_origin();
  R.read_tags();
  shape = R.shape();
  return std::move(R.r);
}

}  // namespace

std::shared_ptr<const RuleSet> RuleSet::load(const std::string& path, const config::Config& cfg, const OriginFactory& make_origin) {
  const std::string text = read_file(path, cfg);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(text).get(doc)) throw ConfigError(path + ": not valid JSON (" + simdjson::error_message(err) + ")");

  Loader L{path, cfg};
  auto set = std::make_shared<RuleSet>();
  set->source_ = path;
  auto root = L.object_at(doc, "$");
  L.check_keys(root, "$", {"queries_dir", "doctypes", "rules"});
  set->queries_dir_ = queries_dir_at(L, root);

  if (auto e = root["doctypes"]; !e.error()) {
    for (auto field : L.object_at(e.value_unsafe(), "$.doctypes")) set->doctypes_.emplace(std::string(field.key), doctype_at(L, field.key, field.value));
    check_doctypes(L, set->doctypes_);
  }

  simdjson::dom::array rules;
  if (auto e = root["rules"]; e.error() || e.get(rules)) L.fail("$.rules", "expected an array of rules");
  std::set<std::string> names;
  std::map<std::string, std::size_t> routes;
  for (auto item : rules) {
    const std::size_t index = set->rules_.size();
    std::string shape;
    Rule r = rule_at(L, item, index, set->queries_dir_, names, shape);
    if (auto [it, fresh] = routes.emplace(shape, index); !fresh)
      L.fail("$.rules[" + std::to_string(index) + "] (" + r.name + ").path",
             "the same route as $.rules[" + std::to_string(it->second) + "] (" + set->rules_[it->second].name + "); remove one of them");
    bool literal = std::all_of(r.segments.begin(), r.segments.end(), [](const Rule::Segment& s) { return s.kind == Rule::Segment::Kind::literal; });
    if (literal) set->exact_[static_cast<std::size_t>(r.method)].emplace(r.path, index);
    set->rules_.push_back(std::move(r));
  }
  if (set->rules_.empty()) L.fail("$.rules", "no rules; pitstop would only pass requests through");
  // The origins last: they may look at the whole set (doctypes, the queries' folder).
  if (make_origin)
    for (auto& r : set->rules_)
      if (!is_write(r.kind)) r.origin = make_origin(r, *set);
  return set;
}

const Doctype* RuleSet::doctype(std::string_view name) const {
  auto it = doctypes_.find(name);
  return it == doctypes_.end() ? nullptr : &it->second;
}

const Rule* RuleSet::match(http::Method method, std::string_view path, Values& captures) const {
  if (method == http::Method::head) method = http::Method::get;
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  captures.items.clear();
  const auto& exact = exact_[static_cast<std::size_t>(method)];
  if (auto it = exact.find(path); it != exact.end()) return &rules_[it->second];
  if (path.empty() || path[0] != '/') return nullptr;
  const auto parts = split_path(path);
  for (const auto& r : rules_) {
    if (r.method != method) continue;
    captures.items.clear();
    bool ok = true;
    std::size_t i = 0;
    for (const auto& seg : r.segments) {
      if (seg.kind == Rule::Segment::Kind::rest) {
        if (i >= parts.size()) {
          ok = false;
          break;
        }
        // The rest of the path, slashes included (Frappe's <path:name>).
        auto start = static_cast<std::size_t>(parts[i].data() - path.data());
        captures.items.emplace_back(seg.text, std::string(path.substr(start)));
        i = parts.size();
        break;
      }
      if (i >= parts.size()) {
        ok = false;
        break;
      }
      if (seg.kind == Rule::Segment::Kind::literal) {
        if (parts[i] != seg.text) ok = false;
      } else {
        if (parts[i].empty()) ok = false;
        else captures.items.emplace_back(seg.text, std::string(parts[i]));
      }
      if (!ok) break;
      ++i;
    }
    if (!ok || i != parts.size()) continue;
    if (const std::string* dt = captures.find("doctype")) {
      // Resource routes serve the configured, non-child doctypes only.
      const Doctype* d = doctype(*dt);
      if (!d || !d->parent.empty()) continue;
    }
    if (const std::string* name = captures.find("name"); name && name->empty()) continue;
    return &r;
  }
  captures.items.clear();
  return nullptr;
}

boost::system::result<std::string, http::Problem> decode_path(std::string_view raw) {
  std::string out = percent_decode(raw, false);
  if (out.find('\0') != std::string::npos) return http::Problem{400, "BadRequest", "The request path contains a NUL byte"};
  if (!valid_utf8(out)) return http::Problem{400, "BadRequest", "The request path is not valid UTF-8"};
  return out;
}

boost::system::result<Values, http::Problem> parse_query(std::string_view raw, std::size_t max_pairs) {
  Values out;
  std::size_t count = 0;
  std::size_t start = 0;
  while (start <= raw.size() && !raw.empty()) {
    auto amp = raw.find('&', start);
    std::string_view pair = raw.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start);
    if (!pair.empty()) {
      if (++count > max_pairs)
        return http::Problem{400, "BadRequest", "More than " + std::to_string(max_pairs) + " query parameters"};
      auto eq = pair.find('=');
      std::string name = percent_decode(pair.substr(0, eq), true);
      std::string value = eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
      if (name.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
        return http::Problem{400, "BadRequest", "A query parameter contains a NUL byte"};
      if (!valid_utf8(name) || !valid_utf8(value))
        return http::Problem{400, "BadRequest", "A query parameter is not valid UTF-8"};
      if (!out.find(name)) out.items.emplace_back(std::move(name), std::move(value));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return out;
}

boost::system::result<Values, http::Problem> bind_params(const Rule& rule, const Values& query) {
  Values out;
  for (const auto& p : rule.params) {
    const std::string* v = query.find(p.name);
    if (!v || v->empty()) {
      if (p.required) return validation("Missing required parameter: " + p.name);
      continue;
    }
    switch (p.type) {
      case ParamType::string:
        if (utf8_length(*v) > p.max_length)
          return validation("Parameter " + p.name + " is longer than " + std::to_string(p.max_length) + " characters");
        out.items.emplace_back(p.name, *v);
        break;
      case ParamType::date:
        if (!valid_date(*v)) return validation("Parameter " + p.name + " must be a date YYYY-MM-DD");
        out.items.emplace_back(p.name, *v);
        break;
      case ParamType::integer: {
        std::int64_t n = 0;
        auto r = std::from_chars(v->data(), v->data() + v->size(), n);
        if (r.ec != std::errc() || r.ptr != v->data() + v->size())
          return validation("Parameter " + p.name + " must be an integer");
        out.items.emplace_back(p.name, std::to_string(n));
        break;
      }
    }
  }
  return out;
}

namespace {
void append_escaped(std::string& key, std::string_view v) {
  if (v.find_first_of("\\\x1f") == std::string_view::npos) {
    key.append(v);
    return;
  }
  for (char c : v) {
    if (c == '\\') key += "\\\\";
    else if (c == '\x1f') key += "\\u";
    else key.push_back(c);
  }
}
}  // namespace

std::string cache_key(std::string_view site, const Rule& rule, const Values& captures, const Values& params,
                      std::string_view extra, std::string_view user, std::string_view fingerprint) {
  std::string key;
  key.reserve(64 + site.size() + extra.size());
  append_escaped(key, site);
  key += '\x1f';
  key += rule.name;
  for (const auto* group : {&captures, &params}) {
    for (const auto& [k, v] : group->items) {
      key += '\x1f';
      key += k;
      key += '=';
      append_escaped(key, v);
    }
  }
  if (!extra.empty()) {
    key += "\x1fl=";
    append_escaped(key, extra);
  }
  if (rule.scope == Scope::user && !fingerprint.empty()) {
    key += "\x1fp=";
    append_escaped(key, fingerprint);
  } else if (rule.scope == Scope::user) {
    key += "\x1fu=";
    append_escaped(key, user);
  }
  return key;
}

namespace {

void json_scalar_text(simdjson::dom::element e, std::vector<std::string>& out) {
  switch (e.type()) {
    case simdjson::dom::element_type::STRING: {
      std::string_view s = e.get_string().value_unsafe();
      if (!s.empty()) out.emplace_back(s);
      break;
    }
    case simdjson::dom::element_type::INT64: out.push_back(std::to_string(e.get_int64().value_unsafe())); break;
    case simdjson::dom::element_type::UINT64: out.push_back(std::to_string(e.get_uint64().value_unsafe())); break;
    case simdjson::dom::element_type::BOOL: out.push_back(e.get_bool().value_unsafe() ? "1" : "0"); break;
    default: break;  // null, objects, arrays and doubles name nothing
  }
}

void resolve(simdjson::dom::element e, const std::vector<std::string>& path, std::size_t i, std::vector<std::string>& out) {
  if (i == path.size()) {
    json_scalar_text(e, out);
    return;
  }
  if (path[i] == "*") {
    simdjson::dom::array a;
    if (e.get(a)) return;
    for (auto item : a) resolve(item, path, i + 1, out);
    return;
  }
  simdjson::dom::object o;
  if (e.get(o)) return;
  simdjson::dom::element child;
  if (o[path[i]].get(child)) return;
  resolve(child, path, i + 1, out);
}

}  // namespace

std::vector<std::string> row_tags(const Doctype& d, const Values& row) {
  std::vector<std::string> out = render_tags(d.row_tags, row, {}, "");
  const std::string* name = row.find("name");
  if (!d.parent.empty()) {
    if (const std::string* parent = row.find("parent"); parent && !parent->empty()) out.push_back("doc:" + d.parent + "/" + *parent);
  } else if (name && !name->empty()) {
    out.push_back("doc:" + d.name + "/" + *name);
  }
  out.push_back("doctype:" + d.name);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

constexpr std::size_t kKeptParserBytes = 1 << 20;

std::vector<std::string> render_tags(const std::vector<TagTemplate>& tags, const Values& captures, const Values& params,
                                     std::string_view result_json) {
  std::set<std::string> out;
  // One parser per thread keeps its buffers (several times the document) between answers; an
  // unusually large answer gets a parser of its own, so that no thread keeps that much.
  thread_local simdjson::dom::parser kept;
  std::optional<simdjson::dom::parser> own;
  simdjson::dom::parser& parser = result_json.size() <= kKeptParserBytes ? kept : own.emplace();
  simdjson::dom::element doc;
  bool parsed = false, parse_failed = false;
  for (const auto& t : tags) {
    // Each piece contributes one or more alternatives; the tag set is their product.
    std::vector<std::string> partial{""};
    for (const auto& piece : t.pieces) {
      std::vector<std::string> options;
      if (piece.kind == TagTemplate::Piece::Kind::literal) {
        options.push_back(piece.text);
      } else if (piece.kind == TagTemplate::Piece::Kind::value) {
        const std::string* v = captures.find(piece.text);
        if (!v) v = params.find(piece.text);
        if (v && !v->empty()) options.push_back(*v);
      } else {
        if (!parsed && !parse_failed) {
          parse_failed = static_cast<bool>(parser.parse(result_json.data(), result_json.size(), true).get(doc));
          parsed = !parse_failed;
        }
        if (parsed) resolve(doc, piece.path, 0, options);
      }
      std::vector<std::string> next;
      for (const auto& a : partial)
        for (const auto& b : options) next.push_back(a + b);
      partial = std::move(next);
      if (partial.empty()) break;
    }
    for (auto& tag : partial) out.insert(std::move(tag));
  }
  return {out.begin(), out.end()};
}

}  // namespace pitstop::rules
