#pragma once
// Where a rule's reads are answered from. `Origin` is the one interface the read path talks to;
// each rule holds one, built from its `origin` key by make_origin. The sql origin is the
// MariaDB-backed handler inside pitstop: named queries (sql/queries/*.sql) answer the method
// endpoints as Frappe wraps a method ({"message": …}); generic resource reads answer
// /api/resource as Frappe does ({"data": …}). Values are typed as Frappe types them.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/db/db.hpp"
#include "proxy/json/writer.hpp"
#include "proxy/origin/list_query.hpp"
#include "proxy/rules/rules.hpp"

namespace pitstop::auth {
struct Identity;
}
namespace pitstop::perm {
class Snapshot;
struct User;
struct DocView;
}

namespace pitstop::origin {

// An origin's answer: what the client gets and the cache may keep.
struct Answer {
  unsigned status = 200;
  std::string content_type = "application/json";
  // Header lines worth keeping with the body, formatted ("Name: value\r\n").
  std::string headers;
  std::string body;
  // What the answer depends on (the rule's tags, rendered over the request and the body).
  std::vector<std::string> tags;
  // Served to this request only, never kept: it sets a cookie of its own, or its request named a
  // row otherwise than it is stored (`variant`, below).
  bool no_store = false;
  // The request named a row otherwise than it is stored (`cust-00177`, `CUST-00177 `, full-width
  // letters: utf8mb4_unicode_ci finds CUST-00177 for each). Served, never cached: a row then
  // occupies one entry however many ways its name is spelled, and the one entry is tagged with
  // the stored name that every write of the row invalidates.
  bool variant = false;
};

// What an origin is asked: one request, as its rule bound it. Owned, since a refresh
// (stale-while-revalidate) outlives the request that started it.
struct Ask {
  rules::Values captures;  // from the path, in path order
  rules::Values params;    // the rule's parameters, bound and normalised
  rules::Values query;     // every query parameter, decoded (a list reads fields, filters, …)
  std::shared_ptr<const auth::Identity> identity;
  // For the http origin only (empty for the others): the request as the client sent it, which
  // the ERP is asked with, its own credentials included.
  struct Sent {
    std::string path;  // still encoded; the query the ERP gets is the rule's bound parameters
    std::string host;
    std::string authorization;
    std::string cookie;
    std::string accept_language;
  } sent;
};

struct Catalog;

// What an origin uses on the worker thread that asks it.
class Context {
 public:
  virtual ~Context() = default;
  virtual db::Pool& primary() = 0;
  // The table metadata of the configured doctypes (read once, retried until it works).
  virtual boost::asio::awaitable<boost::system::result<std::shared_ptr<const Catalog>, http::Problem>> catalog() = 0;
  virtual const rules::RuleSet& rules() const = 0;
  virtual ListLimits list_limits() const = 0;
  // The ERP behind pitstop (upstream.url), or nullptr.
  virtual http::Upstream* upstream() = 0;
  // The ERP's permissions as of now: read again when they changed (a 503 when they cannot be).
  virtual boost::asio::awaitable<boost::system::result<std::shared_ptr<const perm::Snapshot>, http::Problem>> permissions() = 0;
};

class Origin {
 public:
  virtual ~Origin() = default;
  // Before the cache is asked: what the cache key needs beyond the rule's parameters (a list's
  // canonical request), or the refusal of a request the origin could never answer.
  virtual boost::system::result<std::string, http::Problem> key_extra(const rules::Values& query) const;
  // The answer, with the rule's tags rendered over a 200's body; or the problem, in Frappe's
  // error shape (`transient` when what failed is behind pitstop).
  boost::asio::awaitable<boost::system::result<Answer, http::Problem>> fetch(const rules::Rule& rule, const Ask& ask, Context& ctx) const;

 protected:
  virtual boost::asio::awaitable<boost::system::result<Answer, http::Problem>> answer(const rules::Rule& rule, const Ask& ask,
                                                                                     Context& ctx) const = 0;
};

// A write a rule with the http origin forwards to the ERP (POST, PUT, DELETE of a resource), and
// the tags of the document before and after it: the caller invalidates them before answering.
struct WriteToErp {
  std::string method;
  std::string target;  // as the client sent it
  std::vector<std::pair<std::string, std::string>> headers;  // the client's, to pass on
  std::string body;
  std::string name;  // the document, as the path names it (empty for an insert)
};
struct WrittenByErp {
  unsigned status = 0;
  std::string content_type = "application/json";
  std::string headers;  // the ERP's header lines, cookies included ("Name: value\r\n")
  std::string body;
  std::vector<std::string> tags;  // empty unless the ERP answered 2xx
};
boost::asio::awaitable<boost::system::result<WrittenByErp, http::Problem>> forward_write(Context& ctx, const rules::Doctype& doctype,
                                                                                         const WriteToErp& write);

// The origin a read rule names (rules::RuleSet::load's factory). Reads what it needs once (a
// named query's file); throws config::ConfigError naming the file, the rule and the fix.
std::shared_ptr<const Origin> make_origin(const rules::Rule& rule, const rules::RuleSet& rules);

// A named query file: statements, each introduced by a directive line
//   -- @result <name> one|many|map [required <DocType>:<param>]
//   -- @result . list|merge
// `one` is a row object (or null), `many` an array of row objects, `map` an object from the first
// column to the second, `merge` puts one row's columns into the message itself, and `list` (alone)
// makes the message an array. Parameters are written :name and bound, never spliced.
struct Statement {
  enum class Mode { one, many, map, merge, list };
  std::string name;
  Mode mode = Mode::many;
  std::string sql;                  // with ? placeholders
  std::vector<std::string> params;  // in placeholder order
  std::string required_doctype;     // "one ... required Customer:customer"
  std::string required_param;
};

struct NamedQuery {
  std::string name;
  std::string file;
  std::vector<Statement> statements;
  std::vector<std::string> params() const;  // every :param used
};

// Parses a query file (throws config::ConfigError naming the file and line).
NamedQuery parse_named_query(const std::string& name, const std::string& file, const std::string& text);
// Loads an sql rule's query and checks that each :param is a required parameter of the rule
// and that its tags name rows as stored.
NamedQuery load_query(const rules::Rule& rule, const rules::RuleSet& rules);

// A parameter that a `required <DocType>:<param>` result names a row by is checked against the
// row's stored name (Answer::variant).
boost::asio::awaitable<boost::system::result<Answer, http::Problem>> run_named_query(db::Pool& pool, const NamedQuery& q,
                                                                                    const rules::Values& params);

// The real columns of the configured doctypes (information_schema), read once per worker.
struct Catalog {
  std::map<std::string, TableMeta, std::less<>> tables;  // by doctype
  const TableMeta* table(std::string_view doctype) const;
};
boost::asio::awaitable<boost::system::result<std::shared_ptr<const Catalog>, http::Problem>> load_catalog(db::Pool& pool,
                                                                                                    const rules::RuleSet& rules);

// Who reads, when the ERP's permissions decide (proxy/perm): a document they may not read is
// refused, fields above their levels are left out, a list holds only the rows they may see.
struct Viewer {
  const perm::Snapshot& permissions;
  const perm::User& user;
};

boost::asio::awaitable<boost::system::result<Answer, http::Problem>> read_doc(db::Pool& pool, const Catalog& catalog,
                                                                             const rules::RuleSet& rules,
                                                                             const rules::Doctype& doctype,
                                                                             const std::string& name,
                                                                             const Viewer* viewer = nullptr);
boost::asio::awaitable<boost::system::result<std::string, http::Problem>> read_list(db::Pool& pool, const Catalog& catalog,
                                                                              const rules::Doctype& doctype,
                                                                              const ListRequest& request,
                                                                              const ListLimits& limits,
                                                                              const Viewer* viewer = nullptr);

// A document as read (results and children as render_doc takes them) for perm::may: views into
// `results`, which must outlive it.
perm::DocView document_view(std::string_view doctype, const std::vector<db::ResultSet>& results,
                            const std::vector<std::pair<std::string, const rules::Doctype*>>& children);

// A document as Frappe answers it ({"data": {...}}, NULL fields left out): results[0] holds the
// document's row, results[i + 1] the rows of children[i] (field name, child doctype). With a
// viewer, the fields above its levels are left out (of the children too).
std::string render_doc(const std::vector<db::ResultSet>& results, std::string_view doctype,
                       const std::vector<std::pair<std::string, const rules::Doctype*>>& children, const Viewer* viewer = nullptr);

// One database value as Frappe's JSON: integers and decimals as numbers, dates and times as
// Python's str(), NULL as null.
void write_value(json::Writer& w, db::Kind kind, const std::optional<std::string>& value);

// Runs statements on one pooled connection, in one read-only consistent snapshot when there is
// more than one; a connection found dead on its first use is replaced once.
struct Sql {
  std::string text;
  std::vector<std::string> values;  // bound as text; nullopt-free
};
boost::asio::awaitable<boost::system::result<std::vector<db::ResultSet>, http::Problem>> run_statements(db::Pool& pool,
                                                                                                  const std::vector<Sql>& sql);

// Maps a database error to the answer a client gets.
http::Problem failure_from(const db::Error& e);

}  // namespace pitstop::origin
