#pragma once
// The rules: which requests pitstop answers itself, how their cache keys and tags are built and
// where their answers come from (rules/workshop.json). Loaded once at start-up, immutable after,
// shared by the workers.
#include <cstdint>
#include <array>
#include <functional>
#include <map>
#include <unordered_map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

#include "proxy/config/config.hpp"
#include "proxy/http/http.hpp"

namespace pitstop::origin {
class Origin;  // proxy/origin/origin.hpp: where a rule's answers come from
}

namespace pitstop::rules {

// Name/value pairs in a fixed order (parameters as the rule lists them, captures in path order).
struct Values {
  std::vector<std::pair<std::string, std::string>> items;
  const std::string* find(std::string_view name) const {
    for (const auto& [k, v] : items)
      if (k == name) return &v;
    return nullptr;
  }
};

enum class ParamType { string, date, integer };

struct Param {
  std::string name;
  ParamType type = ParamType::string;
  bool required = false;
  std::size_t max_length = 140;  // Frappe's varchar(140)
};

enum class Scope { shared, user };
// The rule's `origin` key: a named query, one of Frappe's resource endpoints, or the ERP itself.
enum class OriginKind { sql, resource_doc, resource_list, resource_insert, resource_update, resource_delete, http };
inline bool is_write(OriginKind o) {
  return o == OriginKind::resource_insert || o == OriginKind::resource_update || o == OriginKind::resource_delete;
}

// "customer:{customer}", "doc:{doctype}/{name}", "customer:{$.message.vehicle.customer}",
// "technician:{$.message[*].technician_assigned}": literal text with references to parameters,
// path captures or fields of the answer (a JSON path; [*] expands over arrays).
struct TagTemplate {
  struct Piece {
    enum class Kind { literal, value, result } kind;
    std::string text;                 // literal text or the parameter/capture name
    std::vector<std::string> path;    // result: keys, "*" for every array element
  };
  std::string source;
  std::vector<Piece> pieces;
  bool uses_result() const;
};

struct Rule {
  std::size_t index = 0;
  std::string name;
  http::Method method = http::Method::get;
  std::string path;  // the template as written
  struct Segment {
    enum class Kind { literal, capture, rest } kind;
    std::string text;  // literal text or capture name
  };
  std::vector<Segment> segments;
  std::vector<Param> params;
  std::string category;
  Scope scope = Scope::user;
  bool allow_guest = false;
  std::vector<TagTemplate> tags;
  OriginKind kind = OriginKind::sql;
  std::string query;  // OriginKind::sql: the named query (sql/queries/<query>.sql)
  // Where its reads are answered from, built by the loader's OriginFactory (none for writes,
  // which the write path applies, and when the rules are loaded without a factory).
  std::shared_ptr<const origin::Origin> origin;
  std::vector<std::string> roles;  // any of these Frappe roles is required (none: any user)
  // The doctypes whose records the answer shows (a named query's): when the ERP's permissions
  // cover one, a user who may not read all of its records is refused (not checked when the rule
  // allows guests: its answer is public then).
  std::vector<std::string> reveals;
  // Its own quota (a bucket of its own per identity), instead of the method class's.
  std::optional<config::RateLimit> rate_limit;
};

// How new documents are named, as Frappe's autoname: "series:SO-.YYYY.-.#####" (a naming
// series counted in tabSeries), "field:item_code" (a field's value), "prompt" (the client gives
// the name) or "hash" (a random name, the default when the client gives none).
struct Naming {
  enum class Kind { hash, prompt, field, series } kind = Kind::hash;
  std::string value;  // the series pattern or the field
};

struct Doctype {
  std::string name;
  std::string table;                                // "tab" + name
  std::string parent;                               // for child tables: the parent doctype
  std::vector<std::pair<std::string, std::string>> children;  // fieldname -> child doctype
  std::vector<TagTemplate> row_tags;                // tags a changed row produces (columns)
  Naming naming;
  std::vector<std::string> mandatory;               // fields a new document must have
  // Frappe's submittable documents: docstatus 0 (draft) → 1 (submitted) → 2 (cancelled); a
  // submitted document changes only in its allow_on_submit fields (child table fields too).
  bool is_submittable = false;
  std::vector<std::string> allow_on_submit;
  std::vector<std::pair<std::string, std::string>> links;  // Link field -> the doctype it names
  // Roles allowed to read, create, write (update), delete, submit and cancel; an absent list
  // allows any user, except that submit and cancel fall back to the write list.
  std::map<std::string, std::vector<std::string>> permissions;
  const std::vector<std::string>* allowed(std::string_view action) const {
    auto it = permissions.find(std::string(action));
    if (it == permissions.end() && (action == "submit" || action == "cancel")) return allowed("write");
    return it == permissions.end() ? nullptr : &it->second;
  }
};

// The tags a changed row produces: doc:<DocType>/<name> (the parent's, for a child row),
// doctype:<DocType>, and the doctype's row tags over the row's columns.
std::vector<std::string> row_tags(const Doctype& d, const Values& row);


class RuleSet;
// Builds a read rule's origin once the whole set is loaded; throws config::ConfigError.
using OriginFactory = std::function<std::shared_ptr<const origin::Origin>(const Rule&, const RuleSet&)>;

class RuleSet {
 public:
  // Throws config::ConfigError naming the file, the JSON path (with the rule's index and name)
  // and the fix. Without a factory, rules have no origin (enough to route and key requests).
  static std::shared_ptr<const RuleSet> load(const std::string& path, const config::Config& cfg, const OriginFactory& make_origin = {});

  // The rule for a request, with its path captures. `path` is already percent-decoded.
  const Rule* match(http::Method method, std::string_view path, Values& captures) const;
  const Doctype* doctype(std::string_view name) const;
  const std::vector<Rule>& rules() const { return rules_; }
  const std::map<std::string, Doctype, std::less<>>& doctypes() const { return doctypes_; }
  const std::string& queries_dir() const { return queries_dir_; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::string queries_dir_;
  std::vector<Rule> rules_;
  std::map<std::string, Doctype, std::less<>> doctypes_;
  // Literal templates, looked up by exact path: the hot method endpoints cost one hash lookup.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::array<std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>>, 8> exact_;
};

// Percent-decodes a request path as Frappe (werkzeug) does before routing ('+' stays '+').
// Malformed escapes, NUL and invalid UTF-8 are refused.
boost::system::result<std::string, http::Problem> decode_path(std::string_view raw);
// Parses a query string (application/x-www-form-urlencoded: '+' is a space). The first value of
// a repeated name wins, as in Frappe's form_dict.
boost::system::result<Values, http::Problem> parse_query(std::string_view raw, std::size_t max_pairs = 100);
// The rule's parameters from the query: required ones present, each valid for its type and
// normalised (dates YYYY-MM-DD, integers without leading zeros). Unknown parameters are ignored,
// as Frappe ignores arguments a method does not take. Errors are 417 ValidationError.
boost::system::result<Values, http::Problem> bind_params(const Rule& rule, const Values& query);

// The cache key: site, rule, captures and parameters in a fixed order, `extra` (a canonical list
// request), and for scope `user` the permission fingerprint when the ERP's permissions decide
// (users who may see the same share entries), else the user. Separators cannot occur in decoded
// values (\x1f is escaped), so distinct requests never share a key.
std::string cache_key(std::string_view site, const Rule& rule, const Values& captures, const Values& params,
                      std::string_view extra, std::string_view user, std::string_view fingerprint = {});

// The tags of an answer. `result` is the JSON body (for {$.…} references); a reference that
// resolves to nothing (null, missing field) produces no tag.
std::vector<std::string> render_tags(const std::vector<TagTemplate>& tags, const Values& captures,
                                     const Values& params, std::string_view result_json);

// Parses a tag template; `why` says what is wrong.
bool parse_tag_template(std::string_view text, TagTemplate& out, std::string& why);

}  // namespace pitstop::rules
