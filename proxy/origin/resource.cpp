#include "proxy/auth/auth.hpp"
#include "proxy/log/log.hpp"
#include "proxy/origin/frappe_values.hpp"
#include "proxy/origin/kinds.hpp"
#include "proxy/perm/perm.hpp"

namespace pitstop::origin {

namespace asio = boost::asio;
using boost::system::result;

const TableMeta* Catalog::table(std::string_view doctype) const {
  auto it = tables.find(doctype);
  return it == tables.end() ? nullptr : &it->second;
}

asio::awaitable<result<std::shared_ptr<const Catalog>, http::Problem>> load_catalog(db::Pool& pool, const rules::RuleSet& rules) {
  auto r = co_await pool.execute(
      "SELECT `TABLE_NAME`, `COLUMN_NAME`, `DATA_TYPE`, `CHARACTER_MAXIMUM_LENGTH`, `IS_NULLABLE` FROM information_schema.`COLUMNS` "
      "WHERE `TABLE_SCHEMA` = DATABASE() AND `TABLE_NAME` LIKE 'tab%' ORDER BY `TABLE_NAME`, `ORDINAL_POSITION`",
      {});
  if (!r) co_return failure_from(r.error());
  auto catalog = std::make_shared<Catalog>();
  std::map<std::string, const rules::Doctype*, std::less<>> by_table;
  for (const auto& [name, d] : rules.doctypes()) by_table.emplace(d.table, &d);
  for (const auto& row : r->rows) {
    if (!row[0] || !row[1] || !row[2]) continue;
    auto it = by_table.find(*row[0]);
    if (it == by_table.end()) continue;
    auto& t = catalog->tables[it->second->name];
    t.doctype = it->second->name;
    t.table = it->second->table;
    ColumnMeta c{*row[1], *row[2]};
    if (row[3]) c.max_chars = static_cast<std::size_t>(std::stoull(*row[3]));
    c.nullable = row[4] && *row[4] == "YES";
    t.columns.push_back(std::move(c));
  }
  for (const auto& [name, d] : rules.doctypes())
    if (!catalog->tables.count(name)) log::warn("doctype ", name, ": table `", d.table, "` not found in the database");
  co_return std::shared_ptr<const Catalog>(std::move(catalog));
}

namespace {

std::string select_all(const TableMeta& t) {
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < t.columns.size(); ++i) {
    if (i) sql += ", ";
    sql += frappe::quote_ident(t.columns[i].name);
  }
  sql += " FROM " + frappe::quote_ident(t.table);
  return sql;
}

// Which fields of a doctype a reader does not see: those above the levels the parent doctype's
// permissions let them read (a child's fields are judged by the parent's, as Frappe does).
struct Hidden {
  const perm::Doctype* meta = nullptr;
  const perm::Grant* grant = nullptr;
  bool operator()(std::string_view column) const {
    if (!meta || !grant) return false;
    const perm::Field* f = meta->field(column);
    return f && f->level > 0 && !grant->reads_level(f->level);
  }
};

// Frappe answers documents with as_dict(no_nulls=True): NULL fields are left out.
void write_doc_row(json::Writer& w, const db::ResultSet& r, std::size_t row, std::string_view doctype, const Hidden& hidden) {
  for (std::size_t c = 0; c < r.columns.size(); ++c) {
    if (!r.rows[row][c] || hidden(r.columns[c].name)) continue;
    w.key(r.columns[c].name);
    write_value(w, r.columns[c].kind, r.rows[row][c]);
  }
  w.member("doctype", doctype);
}

}  // namespace

namespace {

std::vector<std::pair<std::string_view, std::optional<std::string_view>>> row_values(const db::ResultSet& r, std::size_t row) {
  std::vector<std::pair<std::string_view, std::optional<std::string_view>>> out;
  out.reserve(r.columns.size());
  for (std::size_t c = 0; c < r.columns.size(); ++c) {
    const auto& v = r.rows[row][c];
    out.emplace_back(r.columns[c].name, v ? std::optional<std::string_view>(*v) : std::nullopt);
  }
  return out;
}

// perm::may(read) over the document as read: its own row and its children's.
bool readable(const Viewer& viewer, const std::string& doctype, const std::vector<db::ResultSet>& results,
              const std::vector<std::pair<std::string, const rules::Doctype*>>& children) {
  return perm::may(viewer.permissions, viewer.user, doctype, perm::read, document_view(doctype, results, children));
}

}  // namespace

perm::DocView document_view(std::string_view doctype, const std::vector<db::ResultSet>& results,
                            const std::vector<std::pair<std::string, const rules::Doctype*>>& children) {
  perm::DocView v;
  v.parent.doctype = doctype;
  if (results.empty() || results[0].rows.empty()) return v;
  v.parent.values = row_values(results[0], 0);
  v.name = v.parent.value("name").value_or("");
  v.owner = v.parent.value("owner").value_or("");
  for (std::size_t i = 0; i < children.size() && i + 1 < results.size(); ++i)
    for (std::size_t r = 0; r < results[i + 1].rows.size(); ++r)
      v.children.push_back(perm::Row{children[i].second->name, row_values(results[i + 1], r)});
  return v;
}

asio::awaitable<result<Answer, http::Problem>> read_doc(db::Pool& pool, const Catalog& catalog, const rules::RuleSet& rules,
                                                  const rules::Doctype& doctype, const std::string& name, const Viewer* viewer) {
  const TableMeta* table = catalog.table(doctype.name);
  if (!table) co_return http::Problem{404, "DoesNotExistError", "DocType " + doctype.name + " not found", false};
  std::vector<Sql> sql;
  sql.push_back({select_all(*table) + " WHERE `name` = ?", {name}});
  std::vector<std::pair<std::string, const rules::Doctype*>> children;
  for (const auto& [field, child] : doctype.children) {
    const TableMeta* ct = catalog.table(child);
    const rules::Doctype* cd = rules.doctype(child);
    if (!ct || !cd) continue;
    children.emplace_back(field, cd);
    sql.push_back({select_all(*ct) + " WHERE `parent` = ? AND `parenttype` = ? AND `parentfield` = ? ORDER BY `idx`",
                   {name, doctype.name, field}});
  }
  auto ran = co_await run_statements(pool, sql);
  if (!ran) co_return ran.error();
  const db::ResultSet& row = (*ran)[0];
  if (row.rows.empty()) co_return http::Problem{404, "DoesNotExistError", doctype.name + " " + name + " not found", false};
  if (viewer && !readable(*viewer, doctype.name, *ran, children))
    co_return http::Problem{403, "PermissionError", "No permission for " + doctype.name + " " + name, false};
  Answer out;
  out.body = render_doc(*ran, doctype.name, children, viewer);
  for (std::size_t c = 0; c < row.columns.size(); ++c)
    if (row.columns[c].name == "name") out.variant = !row.rows[0][c] || *row.rows[0][c] != name;
  co_return out;
}

std::string render_doc(const std::vector<db::ResultSet>& results, std::string_view doctype,
                       const std::vector<std::pair<std::string, const rules::Doctype*>>& children, const Viewer* viewer) {
  std::optional<perm::Grant> grant;
  if (viewer) grant = perm::grant(viewer->permissions, viewer->user, doctype);
  auto hidden_in = [&](std::string_view dt) {
    return viewer ? Hidden{viewer->permissions.doctype(dt), &*grant} : Hidden{};
  };
  std::string body;
  json::Writer w(body);
  w.begin_object().key("data").begin_object();
  if (!results.empty() && !results[0].rows.empty()) write_doc_row(w, results[0], 0, doctype, hidden_in(doctype));
  for (std::size_t i = 0; i < children.size() && i + 1 < results.size(); ++i) {
    const auto& r = results[i + 1];
    // A Table field above the reader's level hides the whole table.
    if (hidden_in(doctype)(children[i].first)) continue;
    w.key(children[i].first).begin_array();
    const Hidden child_hidden = hidden_in(children[i].second->name);
    for (std::size_t row = 0; row < r.rows.size(); ++row) {
      w.begin_object();
      write_doc_row(w, r, row, children[i].second->name, child_hidden);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object().end_object();
  return body;
}

namespace {

// More bound values than this in a reader's row scope (many shares or user permissions) is a
// problem to report, not a statement to send: MariaDB takes at most 65,535 placeholders.
constexpr std::size_t kMaxScopeValues = 20000;

void append_in(RowScope& out, std::string_view column, const std::vector<std::string>& values) {
  out.sql += frappe::quote_ident(column) + " IN (";
  for (std::size_t i = 0; i < values.size(); ++i) {
    out.sql += i ? ", ?" : "?";
    out.params.push_back(values[i]);
  }
  out.sql += ")";
}

// perm::ListScope as SQL: build_match_conditions' shape, with bound values.
result<RowScope, http::Problem> row_scope(const perm::ListScope& scope, const TableMeta& table) {
  RowScope out;
  if (scope.unrestricted()) return out;
  if (scope.only_shared) {
    append_in(out, "name", scope.shared);
    return out;
  }
  std::string match;
  RowScope m;
  if (!scope.owner.empty()) {
    m.sql = "`owner` = ?";
    m.params.push_back(scope.owner);
  }
  for (const auto& r : scope.restrictions) {
    if (!table.find(r.field))
      return http::Problem{500, "PermissionError", "The ERP's permissions restrict " + table.doctype + " by `" + r.field +
                                                      "`, which " + table.table + " does not have", false};
    if (!m.sql.empty()) m.sql += " AND ";
    m.sql += "(";
    if (!scope.strict) m.sql += "IFNULL(" + frappe::quote_ident(r.field) + ", '') = '' OR ";
    append_in(m, r.field, r.values);
    m.sql += ")";
  }
  if (!scope.shared.empty()) {
    out.sql = "(" + m.sql + ") OR ";
    out.params = std::move(m.params);
    append_in(out, "name", scope.shared);
  } else {
    out = std::move(m);
  }
  if (out.params.size() > kMaxScopeValues)
    return http::Problem{503, "ServiceUnavailable", "Too many shared documents or user permissions to list " + table.doctype, false};
  return out;
}

}  // namespace

asio::awaitable<result<std::string, http::Problem>> read_list(db::Pool& pool, const Catalog& catalog, const rules::Doctype& doctype,
                                                        const ListRequest& request, const ListLimits& limits, const Viewer* viewer) {
  const TableMeta* found = catalog.table(doctype.name);
  if (!found) co_return http::Problem{404, "DoesNotExistError", "DocType " + doctype.name + " not found", false};
  const TableMeta* table = found;
  TableMeta seen;  // the table as the viewer sees it: fields above their levels hidden
  RowScope scope;
  if (viewer) {
    const auto ls = perm::list_scope(viewer->permissions, viewer->user, doctype.name);
    if (ls.refused) co_return *ls.refused;
    auto rs = row_scope(ls, *found);
    if (!rs) co_return rs.error();
    scope = std::move(*rs);
    seen = *found;
    const auto g = perm::grant(viewer->permissions, viewer->user, doctype.name);
    const Hidden hidden{viewer->permissions.doctype(doctype.name), &g};
    for (auto& c : seen.columns) c.hidden = hidden(c.name);
    table = &seen;
  }
  auto q = build_list_query(*table, request, limits, &scope);
  if (!q) co_return http::Problem{417, "ValidationError", q.error().message, false};
  if (q->nothing_visible) co_return std::string("{\"data\":[]}");
  std::vector<Sql> sql;
  sql.push_back(Sql{q->sql, q->params});
  auto ran = co_await run_statements(pool, sql);
  if (!ran) co_return ran.error();
  const auto& r = (*ran)[0];
  if (q->capped && r.rows.size() > limits.max_rows)
    co_return http::Problem{417, "ValidationError",
                      "More than " + std::to_string(limits.max_rows) + " rows match; ask for pages with limit_start and limit_page_length",
                      false};
  std::string body;
  json::Writer w(body);
  w.begin_object().key("data").begin_array();
  for (const auto& row : r.rows) {
    if (q->as_dict) {
      w.begin_object();
      for (std::size_t c = 0; c < r.columns.size(); ++c) {
        w.key(c < q->output_names.size() ? q->output_names[c] : r.columns[c].name);
        write_value(w, r.columns[c].kind, row[c]);
      }
      w.end_object();
    } else {
      w.begin_array();
      for (std::size_t c = 0; c < r.columns.size(); ++c) write_value(w, r.columns[c].kind, row[c]);
      w.end_array();
    }
  }
  w.end_array().end_object();
  co_return body;
}

namespace {

ListRequest list_request(const rules::Values& query) {
  ListRequest l;
  auto take = [&](const char* name, std::optional<std::string>& out) {
    if (const std::string* v = query.find(name)) out = *v;
  };
  take("fields", l.fields);
  take("filters", l.filters);
  take("or_filters", l.or_filters);
  take("order_by", l.order_by);
  take("group_by", l.group_by);
  take("limit_start", l.limit_start);
  take("limit_page_length", l.limit_page_length);
  take("limit", l.limit);
  take("as_dict", l.as_dict);
  return l;
}

// The doctype a resource request names, and the catalog that knows its columns.
struct Resolved {
  std::shared_ptr<const Catalog> catalog;
  const rules::Doctype* doctype = nullptr;
};

asio::awaitable<result<Resolved, http::Problem>> resolve(const Ask& ask, Context& ctx) {
  // Resource reads check columns against the table: read them once, retry until that works.
  auto catalog = co_await ctx.catalog();
  if (!catalog) co_return catalog.error();
  const std::string* dt = ask.captures.find("doctype");
  const rules::Doctype* doctype = dt ? ctx.rules().doctype(*dt) : nullptr;
  if (!doctype) co_return http::Problem{404, "DoesNotExistError", "DocType not found", false};
  co_return Resolved{std::move(*catalog), doctype};
}

// The reader, when the ERP's permissions cover the doctype (else the rules file decided).
struct Reader {
  std::shared_ptr<const perm::Snapshot> permissions;
  perm::User user;
  bool covered = false;
  std::optional<Viewer> viewer() const {
    if (!covered) return std::nullopt;
    return Viewer{*permissions, user};
  }
};

asio::awaitable<result<Reader, http::Problem>> viewer_of(const Ask& ask, Context& ctx, const rules::Doctype& doctype) {
  auto perms = co_await ctx.permissions();
  if (!perms) co_return perms.error();
  Reader r;
  r.permissions = std::move(*perms);
  r.user = ask.identity ? perm::user_of(ask.identity->user, ask.identity->roles) : perm::user_of("Guest", {});
  r.covered = perm::grant(*r.permissions, r.user, doctype.name).known;
  co_return r;
}

class DocumentOrigin final : public Origin {
 protected:
  asio::awaitable<result<Answer, http::Problem>> answer(const rules::Rule&, const Ask& ask, Context& ctx) const override {
    auto r = co_await resolve(ask, ctx);
    if (!r) co_return r.error();
    const std::string* found = ask.captures.find("name");
    // Named: g++ 12 mishandles temporaries inside a co_await expression.
    const std::string name = found ? *found : std::string();
    auto who = co_await viewer_of(ask, ctx, *r->doctype);
    if (!who) co_return who.error();
    const std::optional<Viewer> viewer = who->viewer();
    co_return co_await read_doc(ctx.primary(), *r->catalog, ctx.rules(), *r->doctype, name, viewer ? &*viewer : nullptr);
  }
};

class ListOrigin final : public Origin {
 public:
  // Two spellings of the same list share an entry.
  result<std::string, http::Problem> key_extra(const rules::Values& query) const override {
    auto c = canonical_list_request(list_request(query));
    if (!c) return http::Problem{417, "ValidationError", c.error().message, false};
    return std::move(*c);
  }

 protected:
  asio::awaitable<result<Answer, http::Problem>> answer(const rules::Rule&, const Ask& ask, Context& ctx) const override {
    auto r = co_await resolve(ask, ctx);
    if (!r) co_return r.error();
    const ListRequest request = list_request(ask.query);
    const ListLimits limits = ctx.list_limits();
    auto who = co_await viewer_of(ask, ctx, *r->doctype);
    if (!who) co_return who.error();
    const std::optional<Viewer> viewer = who->viewer();
    auto body = co_await read_list(ctx.primary(), *r->catalog, *r->doctype, request, limits, viewer ? &*viewer : nullptr);
    if (!body) co_return body.error();
    Answer out;
    out.body = std::move(*body);
    co_return out;
  }
};

}  // namespace

std::shared_ptr<const Origin> document_origin() { return std::make_shared<DocumentOrigin>(); }
std::shared_ptr<const Origin> list_origin() { return std::make_shared<ListOrigin>(); }

}  // namespace pitstop::origin
