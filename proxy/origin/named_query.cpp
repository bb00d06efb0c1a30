#include <boost/throw_exception.hpp>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "proxy/config/config.hpp"
#include "proxy/origin/frappe_values.hpp"
#include "proxy/origin/kinds.hpp"

namespace pitstop::origin {

namespace asio = boost::asio;
using boost::system::result;

std::vector<std::string> NamedQuery::params() const {
  std::set<std::string> all;
  for (const auto& s : statements) all.insert(s.params.begin(), s.params.end());
  return {all.begin(), all.end()};
}

namespace {

bool ident_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// Replaces :name with ? outside quotes and comments; records the names in order.
std::string bind_names(const std::string& sql, std::vector<std::string>& names) {
  std::string out;
  out.reserve(sql.size());
  for (std::size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (c == '\'' || c == '"' || c == '`') {
      // Copy the quoted text as is (doubled quotes and backslash escapes stay inside).
      std::size_t j = i + 1;
      while (j < sql.size()) {
        if (sql[j] == '\\' && c != '`') {
          j += 2;
          continue;
        }
        if (sql[j] == c) {
          if (j + 1 < sql.size() && sql[j + 1] == c) {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      out.append(sql, i, std::min(j + 1, sql.size()) - i);
      i = j;
      continue;
    }
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      auto eol = sql.find('\n', i);
      if (eol == std::string::npos) break;
      i = eol;
      out.push_back('\n');
      continue;
    }
    if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      auto end = sql.find("*/", i + 2);
      if (end == std::string::npos) break;
      i = end + 1;
      out.push_back(' ');
      continue;
    }
    if (c == ':' && i + 1 < sql.size() && ident_char(sql[i + 1]) && (i == 0 || sql[i - 1] != ':')) {
      std::size_t j = i + 1;
      while (j < sql.size() && ident_char(sql[j])) ++j;
      names.emplace_back(sql, i + 1, j - i - 1);
      out.push_back('?');
      i = j - 1;
      continue;
    }
    out.push_back(c);
  }
  // Trim whitespace and the statement's closing semicolon.
  while (!out.empty() && (std::isspace(static_cast<unsigned char>(out.back())) || out.back() == ';')) out.pop_back();
  std::size_t start = 0;
  while (start < out.size() && std::isspace(static_cast<unsigned char>(out[start]))) ++start;
  return out.substr(start);
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

}  // namespace

NamedQuery parse_named_query(const std::string& name, const std::string& file, const std::string& text) {
  NamedQuery q;
  q.name = name;
  q.file = file;
  std::istringstream in(text);
  std::string line;
  std::size_t lineno = 0;
  std::string body;
  std::optional<Statement> current;
  std::size_t current_line = 0;
  auto fail = [&](std::size_t at, const std::string& what) {
    throw config::ConfigError(file + ":" + std::to_string(at) + ": " + what);
  };
  auto close = [&] {
    if (!current) {
      std::vector<std::string> ignored;
      if (!bind_names(body, ignored).empty()) fail(1, "SQL before the first \"-- @result\" line; every statement needs one");
      body.clear();
      return;
    }
    current->params.clear();
    current->sql = bind_names(body, current->params);
    if (current->sql.empty()) fail(current_line, "the @result has no statement after it");
    if (current->sql.find(';') != std::string::npos) fail(current_line, "one statement per @result (found ';' inside)");
    q.statements.push_back(std::move(*current));
    current.reset();
    body.clear();
  };
  while (std::getline(in, line)) {
    ++lineno;
    auto w = words(line);
    if (w.size() >= 2 && w[0] == "--" && w[1] == "@result") {
      close();
      current.emplace();
      current_line = lineno;
      if (w.size() < 4) fail(lineno, "expected \"-- @result <name> one|many|map\" or \"-- @result . list|merge\"");
      current->name = w[2];
      const std::string& mode = w[3];
      if (mode == "one") current->mode = Statement::Mode::one;
      else if (mode == "many") current->mode = Statement::Mode::many;
      else if (mode == "map") current->mode = Statement::Mode::map;
      else if (mode == "merge") current->mode = Statement::Mode::merge;
      else if (mode == "list") current->mode = Statement::Mode::list;
      else fail(lineno, "unknown mode \"" + mode + "\" (one, many, map, merge, list)");
      const bool unnamed = current->mode == Statement::Mode::merge || current->mode == Statement::Mode::list;
      if (unnamed != (current->name == ".")) fail(lineno, unnamed ? "list and merge take the name \".\"" : "this mode needs a result name");
      if (w.size() > 4) {
        if (w[4] != "required" || w.size() != 6 || current->mode != Statement::Mode::one)
          fail(lineno, "only \"one\" results can be \"required <DocType>:<param>\"");
        auto colon = w[5].find(':');
        if (colon == std::string::npos) fail(lineno, "expected required <DocType>:<param>");
        current->required_doctype = w[5].substr(0, colon);
        // DocType names have spaces: write them with '_' in the directive ("Service_Order").
        for (auto& ch : current->required_doctype)
          if (ch == '_') ch = ' ';
        current->required_param = w[5].substr(colon + 1);
      }
      continue;
    }
    body += line;
    body += '\n';
  }
  close();
  if (q.statements.empty()) fail(1, "no \"-- @result\" statement in the file");
  for (const auto& s : q.statements)
    if (s.mode == Statement::Mode::list && q.statements.size() != 1)
      fail(1, "a \"list\" result must be the file's only statement");
  std::set<std::string> names;
  for (const auto& s : q.statements)
    if (s.name != "." && !names.insert(s.name).second) fail(1, "two results named \"" + s.name + "\"");
  return q;
}

namespace {
// A tag made from a text parameter must name the row as it is stored, or a write of the row
// would not find the entry: the parameter must be one a `required` result resolves (then an
// answer for another spelling is never cached). Dates and integers are normalised by binding.
void check_tag_params(const rules::Rule& r, const NamedQuery& q, const std::string& source) {
  for (std::size_t t = 0; t < r.tags.size(); ++t)
    for (const auto& piece : r.tags[t].pieces) {
      if (piece.kind != rules::TagTemplate::Piece::Kind::value) continue;
      auto p = std::find_if(r.params.begin(), r.params.end(), [&](const rules::Param& x) { return x.name == piece.text; });
      if (p == r.params.end() || p->type != rules::ParamType::string) continue;
      const bool resolved = std::any_of(q.statements.begin(), q.statements.end(),
                                        [&](const Statement& s) { return s.required_param == piece.text; });
      if (!resolved)
        throw config::ConfigError(source + ": $.rules[" + std::to_string(r.index) + "] (" + r.name + ").tags[" + std::to_string(t) +
                                  "]: {" + piece.text + "} is a text parameter that no result of " + q.file +
                                  " resolves to a stored name; add \"-- @result <name> one required <DocType>:" + piece.text +
                                  "\" to the query, or tag from the answer ({$.message...})");
    }
}
}  // namespace

NamedQuery load_query(const rules::Rule& r, const rules::RuleSet& rules) {
  auto file = (std::filesystem::path(rules.queries_dir()) / (r.query + ".sql")).string();
  std::ifstream in(file);
  if (!in) throw config::ConfigError(file + ": cannot be read ($.rules[" + std::to_string(r.index) + "] (" + r.name + ") names it)");
  std::stringstream ss;
  ss << in.rdbuf();
  NamedQuery q = parse_named_query(r.query, file, ss.str());
  for (const auto& p : q.params()) {
    auto it = std::find_if(r.params.begin(), r.params.end(), [&](const rules::Param& x) { return x.name == p; });
    if (it == r.params.end() || !it->required)
      throw config::ConfigError(file + ": uses :" + p + ", which is not a required parameter of $.rules[" + std::to_string(r.index) + "] (" +
                                r.name + "); add it to the rule's params with \"required\": true");
  }
  check_tag_params(r, q, rules.source());
  return q;
}

namespace {
// A rule's named query, read once at start-up.
class NamedQueryOrigin final : public Origin {
 public:
  explicit NamedQueryOrigin(NamedQuery q) : query_(std::move(q)) {}

 protected:
  asio::awaitable<result<Answer, http::Problem>> answer(const rules::Rule&, const Ask& ask, Context& ctx) const override {
    co_return co_await run_named_query(ctx.primary(), query_, ask.params);
  }

 private:
  NamedQuery query_;
};
}  // namespace

std::shared_ptr<const Origin> named_query_origin(const rules::Rule& rule, const rules::RuleSet& rules) {
  return std::make_shared<NamedQueryOrigin>(load_query(rule, rules));
}

http::Problem failure_from(const db::Error& e) {
  http::Problem f;
  f.message = e.message.empty() ? e.code.message() : e.message;
  if (e.code == db::errc::timeout) {
    f.status = 504;
    f.exc_type = "QueryTimeoutError";
    f.message = "The database did not answer in time";
    f.transient = true;
  } else if (e.code == db::errc::server) {
    f.status = 500;
    f.exc_type = "DataError";
  } else {
    f.status = 503;
    f.exc_type = "ServiceUnavailable";
    f.message = "The database is unavailable: " + f.message;
    f.transient = true;
  }
  return f;
}

void write_value(json::Writer& w, db::Kind kind, const std::optional<std::string>& v) {
  if (!v) {
    w.null();
    return;
  }
  switch (kind) {
    case db::Kind::integer:
    case db::Kind::unsigned_integer:
      w.raw(*v);  // MariaDB's own decimal digits
      break;
    case db::Kind::decimal:
    case db::Kind::floating: {
      double d = 0;
      auto r = std::from_chars(v->data(), v->data() + v->size(), d);
      if (r.ec == std::errc()) w.value(d);
      else w.null();
      break;
    }
    case db::Kind::datetime: w.value(json::frappe_datetime(*v)); break;
    case db::Kind::time: w.value(json::frappe_time(*v)); break;
    case db::Kind::null: w.null(); break;
    default: w.value(*v); break;
  }
}

namespace {

void write_row(json::Writer& w, const db::ResultSet& r, std::size_t row) {
  w.begin_object();
  for (std::size_t c = 0; c < r.columns.size(); ++c) {
    w.key(r.columns[c].name);
    write_value(w, r.columns[c].kind, r.rows[row][c]);
  }
  w.end_object();
}

}  // namespace

asio::awaitable<result<std::vector<db::ResultSet>, http::Problem>> run_statements(db::Pool& pool, const std::vector<Sql>& sql) {
  std::vector<db::ResultSet> results;
  for (int attempt = 0; attempt < 2; ++attempt) {
    results.clear();
    auto lease = co_await pool.acquire();
    if (!lease) co_return failure_from(lease.error());
    const bool snapshot = sql.size() > 1;
    std::optional<db::Error> error;
    if (snapshot) {
      auto b = co_await (*lease)->query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", pool.query_timeout());
      if (!b) error = b.error();
    }
    for (std::size_t i = 0; !error && i < sql.size(); ++i) {
      std::vector<db::Param> bound;
      bound.reserve(sql[i].values.size());
      for (const auto& v : sql[i].values) bound.emplace_back(std::string_view(v));
      auto r = co_await (*lease)->execute(sql[i].text, bound, pool.query_timeout());
      if (!r) error = r.error();
      else results.push_back(std::move(*r));
    }
    if (snapshot && !(*lease)->broken()) {
      const char* finish = error ? "ROLLBACK" : "COMMIT";
      auto c = co_await (*lease)->query(finish, pool.query_timeout());
      if (!c && !error) error = c.error();
    }
    if (!error) co_return results;
    // A connection that died while idle fails its first use: run it again once on a new one.
    if (attempt == 0 && error->code == db::errc::connection_lost && results.empty()) continue;
    co_return failure_from(*error);
  }
  co_return http::Problem{503, "ServiceUnavailable", "The database is unavailable", true};
}

asio::awaitable<result<Answer, http::Problem>> run_named_query(db::Pool& pool, const NamedQuery& q, const rules::Values& params) {
  std::vector<Sql> sql;
  for (const auto& s : q.statements) {
    Sql one{s.sql, {}};
    for (const auto& name : s.params) {
      const std::string* v = params.find(name);
      one.values.push_back(v ? *v : std::string());
    }
    sql.push_back(std::move(one));
  }
  // The stored names of the rows the parameters name, in the same snapshot, after the
  // statements (whose results keep their indexes).
  std::vector<const std::string*> named;
  for (const auto& s : q.statements) {
    if (s.required_doctype.empty()) continue;
    const std::string* v = params.find(s.required_param);
    named.push_back(v);
    sql.push_back({"SELECT `name` FROM " + frappe::quote_ident("tab" + s.required_doctype) + " WHERE `name` = ?", {v ? *v : std::string()}});
  }
  auto ran = co_await run_statements(pool, sql);
  if (!ran) co_return ran.error();
  const auto& results = *ran;
  Answer out;
  for (std::size_t i = 0; i < named.size(); ++i) {
    const auto& r = results[q.statements.size() + i];
    if (!r.rows.empty() && (!named[i] || !r.rows[0][0] || *r.rows[0][0] != *named[i])) out.variant = true;
  }

  std::string& body = out.body;
  json::Writer w(body);
  w.begin_object().key("message");
  if (q.statements.size() == 1 && q.statements[0].mode == Statement::Mode::list) {
    w.begin_array();
    for (std::size_t row = 0; row < results[0].rows.size(); ++row) write_row(w, results[0], row);
    w.end_array();
  } else {
    w.begin_object();
    for (std::size_t i = 0; i < q.statements.size(); ++i) {
      const auto& s = q.statements[i];
      const auto& r = results[i];
      switch (s.mode) {
        case Statement::Mode::one:
          if (r.rows.empty() && !s.required_doctype.empty()) {
            const std::string* v = params.find(s.required_param);
            co_return http::Problem{404, "DoesNotExistError", s.required_doctype + " " + (v ? *v : std::string()) + " not found", false};
          }
          w.key(s.name);
          if (r.rows.empty()) w.null();
          else write_row(w, r, 0);
          break;
        case Statement::Mode::many:
          w.key(s.name).begin_array();
          for (std::size_t row = 0; row < r.rows.size(); ++row) write_row(w, r, row);
          w.end_array();
          break;
        case Statement::Mode::map:
          w.key(s.name).begin_object();
          if (r.columns.size() >= 2)
            for (const auto& row : r.rows) {
              w.key(row[0] ? *row[0] : std::string("null"));
              write_value(w, r.columns[1].kind, row[1]);
            }
          w.end_object();
          break;
        case Statement::Mode::merge:
          if (!r.rows.empty())
            for (std::size_t c = 0; c < r.columns.size(); ++c) {
              w.key(r.columns[c].name);
              write_value(w, r.columns[c].kind, r.rows[0][c]);
            }
          break;
        case Statement::Mode::list:
          break;
      }
    }
    w.end_object();
  }
  w.end_object();
  co_return out;
}

}  // namespace pitstop::origin
