#include "proxy/log/log.hpp"
#include "proxy/origin/frappe_values.hpp"
#include "proxy/origin/kinds.hpp"

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

// Frappe answers documents with as_dict(no_nulls=True): NULL fields are left out.
void write_doc_row(json::Writer& w, const db::ResultSet& r, std::size_t row, std::string_view doctype) {
  for (std::size_t c = 0; c < r.columns.size(); ++c) {
    if (!r.rows[row][c]) continue;
    w.key(r.columns[c].name);
    write_value(w, r.columns[c].kind, r.rows[row][c]);
  }
  w.member("doctype", doctype);
}

}  // namespace

asio::awaitable<result<Answer, http::Problem>> read_doc(db::Pool& pool, const Catalog& catalog, const rules::RuleSet& rules,
                                                  const rules::Doctype& doctype, const std::string& name) {
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
  Answer out;
  out.body = render_doc(*ran, doctype.name, children);
  for (std::size_t c = 0; c < row.columns.size(); ++c)
    if (row.columns[c].name == "name") out.variant = !row.rows[0][c] || *row.rows[0][c] != name;
  co_return out;
}

std::string render_doc(const std::vector<db::ResultSet>& results, std::string_view doctype,
                       const std::vector<std::pair<std::string, const rules::Doctype*>>& children) {
  std::string body;
  json::Writer w(body);
  w.begin_object().key("data").begin_object();
  if (!results.empty() && !results[0].rows.empty()) write_doc_row(w, results[0], 0, doctype);
  for (std::size_t i = 0; i < children.size() && i + 1 < results.size(); ++i) {
    const auto& r = results[i + 1];
    w.key(children[i].first).begin_array();
    for (std::size_t row = 0; row < r.rows.size(); ++row) {
      w.begin_object();
      write_doc_row(w, r, row, children[i].second->name);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object().end_object();
  return body;
}

asio::awaitable<result<std::string, http::Problem>> read_list(db::Pool& pool, const Catalog& catalog, const rules::Doctype& doctype,
                                                        const ListRequest& request, const ListLimits& limits) {
  const TableMeta* table = catalog.table(doctype.name);
  if (!table) co_return http::Problem{404, "DoesNotExistError", "DocType " + doctype.name + " not found", false};
  auto q = build_list_query(*table, request, limits);
  if (!q) co_return http::Problem{417, "ValidationError", q.error().message, false};
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

class DocumentOrigin final : public Origin {
 protected:
  asio::awaitable<result<Answer, http::Problem>> answer(const rules::Rule&, const Ask& ask, Context& ctx) const override {
    auto r = co_await resolve(ask, ctx);
    if (!r) co_return r.error();
    const std::string* found = ask.captures.find("name");
    // Named: g++ 12 mishandles temporaries inside a co_await expression.
    const std::string name = found ? *found : std::string();
    co_return co_await read_doc(ctx.primary(), *r->catalog, ctx.rules(), *r->doctype, name);
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
    auto body = co_await read_list(ctx.primary(), *r->catalog, *r->doctype, request, limits);
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
