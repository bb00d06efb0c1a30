// Writes through the sql origin: POST/PUT/DELETE /api/resource/<DocType>[/<name>], as Frappe
// applies them, each in one transaction together with its outbox row.
#include <openssl/rand.h>
#include <simdjson.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <set>

#include "proxy/origin/origin.hpp"
#include "proxy/origin/write.hpp"
#include "proxy/perm/perm.hpp"

#include "proxy/origin/frappe_values.hpp"
#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::origin {

namespace asio = boost::asio;
using boost::system::result;

namespace {

http::Problem invalid(std::string message, const char* exc_type = "ValidationError") {
  return http::Problem{417, exc_type, std::move(message), false};
}

// The server's clock, as Frappe's now(): "YYYY-MM-DD HH:MM:SS.ffffff".
std::string now_text() { return log::utc_text(std::chrono::system_clock::now(), ' ', 6, false); }

// Frappe names child rows (and "hash" doctypes) with 10 random hex characters.
std::string random_name() {
  unsigned char bytes[5];
  RAND_bytes(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

bool digits(std::string_view s, std::size_t from, std::size_t n) {
  for (std::size_t i = from; i < from + n; ++i)
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
  return true;
}

bool valid_date_text(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 0, 4) || !digits(s, 5, 2) || !digits(s, 8, 2)) return false;
  int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  return d <= kDays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 1 : 0);
}

bool valid_time_text(std::string_view s) {
  // HH:MM:SS[.ffffff]
  if (s.size() < 8 || s[2] != ':' || s[5] != ':' || !digits(s, 0, 2) || !digits(s, 3, 2) || !digits(s, 6, 2)) return false;
  if ((s[0] - '0') * 10 + (s[1] - '0') > 23 || (s[3] - '0') * 10 + (s[4] - '0') > 59 || (s[6] - '0') * 10 + (s[7] - '0') > 59)
    return false;
  if (s.size() == 8) return true;
  return s[8] == '.' && s.size() <= 15 && s.size() > 9 && digits(s, 9, s.size() - 9);
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

bool is_integer_type(std::string_view t) {
  return t == "tinyint" || t == "smallint" || t == "mediumint" || t == "int" || t == "bigint" || t == "year";
}
bool is_decimal_type(std::string_view t) { return t == "decimal" || t == "float" || t == "double"; }

// A JSON value as the text MariaDB stores for `column`; nullopt for NULL.
result<std::optional<std::string>, http::Problem> convert(const ColumnMeta& column, simdjson::dom::element v, std::string_view doctype) {
  using T = simdjson::dom::element_type;
  const std::string label = "Field " + column.name + " of " + std::string(doctype);
  if (v.type() == T::NULL_VALUE) {
    if (!column.nullable) return invalid(label + " cannot be null");
    return std::optional<std::string>{};
  }
  const std::string& t = column.data_type;
  if (is_integer_type(t)) {
    if (v.type() == T::BOOL) return std::optional<std::string>{v.get_bool().value_unsafe() ? "1" : "0"};
    if (v.type() == T::INT64) return std::optional<std::string>{std::to_string(v.get_int64().value_unsafe())};
    if (v.type() == T::UINT64) return std::optional<std::string>{std::to_string(v.get_uint64().value_unsafe())};
    if (v.type() == T::DOUBLE) {
      double d = v.get_double().value_unsafe();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return std::optional<std::string>{std::to_string(static_cast<std::int64_t>(d))};
    }
    return invalid(label + " must be a whole number");
  }
  if (is_decimal_type(t)) {
    if (v.type() == T::INT64) return std::optional<std::string>{std::to_string(v.get_int64().value_unsafe())};
    if (v.type() == T::UINT64) return std::optional<std::string>{std::to_string(v.get_uint64().value_unsafe())};
    if (v.type() == T::DOUBLE) {
      double d = v.get_double().value_unsafe();
      if (!std::isfinite(d)) return invalid(label + " must be a number");
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, d);
      return std::optional<std::string>{std::string(buf, r.ptr)};
    }
    return invalid(label + " must be a number");
  }
  std::string_view s;
  if (v.type() == T::STRING) {
    s = v.get_string().value_unsafe();
  } else if (v.type() == T::INT64 || v.type() == T::UINT64 || v.type() == T::DOUBLE) {
    // Frappe stores a number given for a Data field as its text.
    if (t == "date" || t == "datetime" || t == "timestamp" || t == "time") return invalid(label + " must be a string");
    std::string text = simdjson::to_string(v);
    return std::optional<std::string>{text};
  } else {
    return invalid(label + " must be a string");
  }
  if (t == "date") {
    if (!valid_date_text(s)) return invalid(label + " must be a date YYYY-MM-DD");
    return std::optional<std::string>{std::string(s)};
  }
  if (t == "datetime" || t == "timestamp") {
    if (s.size() == 10 && valid_date_text(s)) return std::optional<std::string>{std::string(s) + " 00:00:00"};
    if (s.size() < 19 || !valid_date_text(s.substr(0, 10)) || (s[10] != ' ' && s[10] != 'T') || !valid_time_text(s.substr(11)))
      return invalid(label + " must be a datetime YYYY-MM-DD HH:MM:SS");
    std::string out(s);
    out[10] = ' ';
    return std::optional<std::string>{out};
  }
  if (t == "time") {
    if (!valid_time_text(s)) return invalid(label + " must be a time HH:MM:SS");
    return std::optional<std::string>{std::string(s)};
  }
  if (column.max_chars > 0 && utf8_length(s) > column.max_chars)
    return invalid(label + " is longer than " + std::to_string(column.max_chars) + " characters");
  return std::optional<std::string>{std::string(s)};
}

// Fields the server keeps: a client may send them back (a fetched document), they are never
// written from the body. name, owner, creation and docstatus are read apart (see Parsed).
bool server_field(std::string_view f) {
  return f == "owner" || f == "creation" || f == "modified_by" || f == "doctype" || f == "parent" || f == "parentfield" ||
         f == "parenttype" || f == "idx" || f == "docstatus" || f == "__islocal" || f == "__unsaved" || f == "__last_sync_on" ||
         f == "__newname";
}

// A row as the client sent it: column -> value (nullopt is NULL), in the client's order.
struct Row {
  std::vector<std::pair<std::string, std::optional<std::string>>> values;
  const std::optional<std::string>* find(std::string_view k) const {
    for (const auto& [n, v] : values)
      if (n == k) return &v;
    return nullptr;
  }
  void set(const std::string& k, std::optional<std::string> v) {
    for (auto& [n, old] : values)
      if (n == k) {
        old = std::move(v);
        return;
      }
    values.emplace_back(k, std::move(v));
  }
};

struct ChildRows {
  std::string field;
  const rules::Doctype* doctype;
  const TableMeta* table;
  std::vector<Row> rows;
};

struct Parsed {
  Row row;
  std::optional<std::string> modified;  // PUT: the version the client saw
  std::vector<ChildRows> children;      // only the child tables the body names
  std::optional<std::int64_t> docstatus;
  std::optional<std::string> name;      // "name", or "__newname" as Frappe's prompt sends it
  // owner and creation as the client sent them back: an update may not change them.
  std::vector<std::pair<std::string, std::string>> constants;
};

result<Row, http::Problem> parse_row(simdjson::dom::object obj, const TableMeta& table, std::string_view doctype, bool child) {
  Row row;
  for (auto field : obj) {
    std::string key(field.key);
    if (server_field(key) || key == "modified") continue;
    if (child && key == "idx") continue;  // the position in the list decides
    const ColumnMeta* col = table.find(key);
    if (!col || key.front() == '_') return invalid("Unknown field " + key + " for " + std::string(doctype));
    auto v = convert(*col, field.value, doctype);
    if (!v) return v.error();
    row.set(key, std::move(*v));
  }
  return row;
}

result<Parsed, http::Problem> parse_body(std::string_view body, const Catalog& catalog, const rules::RuleSet& rules, const rules::Doctype& d,
                                   const TableMeta& table) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::padded_string padded(body.data(), body.size());
  if (auto err = parser.parse(padded).get(doc)) return invalid(std::string("The body is not valid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object obj;
  if (doc.get(obj)) return invalid("The body must be a JSON object of the document's fields");
  Parsed out;
  std::vector<std::pair<std::string, simdjson::dom::element>> plain;
  for (auto field : obj) {
    std::string key(field.key);
    if (key == "doctype") {
      std::string_view dt;
      if (field.value.get(dt) || dt != d.name) return invalid("The body's doctype is not " + d.name);
      continue;
    }
    if (key == "modified") {
      std::string_view m;
      if (field.value.get(m)) return invalid("modified must be a datetime string");
      out.modified = std::string(m);
      continue;
    }
    if (key == "docstatus") {
      std::int64_t ds = 0;
      if (field.value.get(ds)) return invalid("docstatus must be 0 (draft), 1 (submitted) or 2 (cancelled)");
      out.docstatus = ds;
      continue;
    }
    if (key == "name" || key == "__newname") {
      std::string_view n;
      if (field.value.is_null()) continue;
      if (field.value.get(n)) return invalid("name must be a string");
      if (key == "name" || !out.name) out.name = std::string(n);
      continue;
    }
    if (key == "owner" || key == "creation") {
      std::string_view v;
      if (!field.value.get(v)) out.constants.emplace_back(key, std::string(v));
      continue;
    }
    auto child = std::find_if(d.children.begin(), d.children.end(), [&](const auto& c) { return c.first == key; });
    if (child == d.children.end()) continue;
    const rules::Doctype* cd = rules.doctype(child->second);
    const TableMeta* ct = catalog.table(child->second);
    if (!cd || !ct) return invalid("Child table " + child->second + " is not available");
    simdjson::dom::array rows;
    if (field.value.get(rows)) return invalid(key + " must be a list of rows");
    ChildRows cr{key, cd, ct, {}};
    for (auto item : rows) {
      simdjson::dom::object ro;
      if (item.get(ro)) return invalid("Each row of " + key + " must be an object");
      auto r = parse_row(ro, *ct, cd->name, true);
      if (!r) return r.error();
      cr.rows.push_back(std::move(*r));
      if (cr.rows.size() > 1000) return invalid(key + " has more than 1000 rows");
    }
    out.children.push_back(std::move(cr));
  }
  // The document's own fields (child tables and the handled keys removed).
  for (auto field : obj) {
    std::string key(field.key);
    if (key == "doctype" || key == "modified" || key == "name") continue;
    if (std::any_of(d.children.begin(), d.children.end(), [&](const auto& c) { return c.first == key; })) continue;
    if (server_field(key)) continue;
    const ColumnMeta* col = table.find(key);
    if (!col || key.front() == '_') return invalid("Unknown field " + key + " for " + d.name);
    auto v = convert(*col, field.value, d.name);
    if (!v) return v.error();
    out.row.set(key, std::move(*v));
  }
  return out;
}

bool empty_value(const std::optional<std::string>* v) { return !v || !*v || (*v)->empty(); }

std::optional<http::Problem> check_mandatory(const rules::Doctype& d, const Row& row, bool partial) {
  std::vector<std::string> missing;
  for (const auto& f : d.mandatory) {
    const auto* v = row.find(f);
    if (partial ? (v && empty_value(v)) : empty_value(v)) missing.push_back(f);
  }
  if (missing.empty()) return std::nullopt;
  std::string list;
  for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
  return http::Problem{417, "MandatoryError", "[" + d.name + "]: " + list, false};
}

// Expands a naming series ("SO-.YYYY.-.#####") into its counter key and digit count.
std::pair<std::string, int> series_key(const std::string& pattern) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  // Sized for any int: gmtime's fields are in range, but the compiler cannot know it.
  char y4[16], y2[16], m2[16], d2[16];
  std::snprintf(y4, sizeof y4, "%04d", tm.tm_year + 1900);
  std::snprintf(y2, sizeof y2, "%02d", (tm.tm_year + 1900) % 100);
  std::snprintf(m2, sizeof m2, "%02d", tm.tm_mon + 1);
  std::snprintf(d2, sizeof d2, "%02d", tm.tm_mday);
  std::string key;
  int width = 0;
  std::size_t start = 0;
  while (start <= pattern.size()) {
    auto dot = pattern.find('.', start);
    std::string part = pattern.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() && part.find_first_not_of('#') == std::string::npos) width = static_cast<int>(part.size());
    else if (part == "YYYY") key += y4;
    else if (part == "YY") key += y2;
    else if (part == "MM") key += m2;
    else if (part == "DD") key += d2;
    else key += part;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return {key, width};
}

// One write transaction on one connection; statement helpers keep the first error. (Values go
// through a plain function: g++ 12 mishandles braced lists inside co_await expressions.)
struct Tx {
  db::Lease& lease;
  std::chrono::milliseconds timeout;
  std::optional<db::Error> error;

  asio::awaitable<std::optional<db::ResultSet>> exec_v(std::string sql, std::vector<std::optional<std::string>> values) {
    if (error) co_return std::nullopt;
    std::vector<db::Param> params;
    params.reserve(values.size());
    for (const auto& v : values) {
      if (v) params.emplace_back(std::string_view(*v));
      else params.emplace_back(nullptr);
    }
    auto r = co_await lease->execute(sql, params, timeout);
    if (!r) {
      error = r.error();
      co_return std::nullopt;
    }
    co_return std::move(*r);
  }

  template <class... A>
  asio::awaitable<std::optional<db::ResultSet>> exec(std::string sql, const A&... args) {
    std::vector<std::optional<std::string>> values{std::optional<std::string>(args)...};
    return exec_v(std::move(sql), std::move(values));
  }
};

// Link fields must name existing documents (Frappe's LinkValidationError), and are stored as the
// name is stored: the collation finds `cust-00177` for CUST-00177, and Frappe keeps the latter
// ("to be sure that the case of the name is correct"), so tags made from the column match the
// row's own.
asio::awaitable<void> check_links(Tx& tx, const rules::RuleSet& rules, const rules::Doctype& dt, Row& row,
                                  std::optional<http::Problem>& refusal) {
  for (const auto& [field, target] : dt.links) {
    const auto* v = row.find(field);
    if (!v || !*v || (*v)->empty() || refusal || tx.error) continue;
    const rules::Doctype* td = rules.doctype(target);
    if (!td) continue;
    const std::string value = **v;
    auto r = co_await tx.exec("SELECT `name` FROM " + frappe::quote_ident(td->table) + " WHERE `name` = ?", value);
    if (r && r->rows.empty()) refusal = http::Problem{417, "LinkValidationError", "Could not find " + target + ": " + value, false};
    else if (r && r->rows[0][0] && *r->rows[0][0] != value) row.set(field, *r->rows[0][0]);
  }
}

// Sets every child row of the document to the parent's docstatus, as Frappe keeps them.
asio::awaitable<void> set_children_docstatus(Tx& tx, const Catalog& catalog, const rules::RuleSet& rules, const rules::Doctype& d,
                                             const std::string& parent, std::int64_t docstatus) {
  for (const auto& [field, child] : d.children) {
    const TableMeta* ct = catalog.table(child);
    if (!ct || !ct->find("docstatus") || tx.error || !rules.doctype(child)) continue;
    co_await tx.exec("UPDATE " + frappe::quote_ident(ct->table) + " SET `docstatus` = ? WHERE `parent` = ? AND `parenttype` = ? AND `parentfield` = ?",
                     std::to_string(docstatus), parent, d.name, field);
  }
}

std::string select_sql(const TableMeta& t) {
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < t.columns.size(); ++i) sql += (i ? ", " : "") + frappe::quote_ident(t.columns[i].name);
  return sql + " FROM " + frappe::quote_ident(t.table);
}

rules::Values to_values(const db::ResultSet& r, std::size_t row) {
  rules::Values v;
  for (std::size_t c = 0; c < r.columns.size(); ++c)
    if (r.rows[row][c]) v.items.emplace_back(r.columns[c].name, *r.rows[row][c]);
  return v;
}

http::Problem from_db(const db::Error& e, const rules::Doctype& d, const std::string& name) {
  if (e.code == db::errc::server && e.server_code == 1062)
    return http::Problem{409, "DuplicateEntryError", d.name + " " + name + " already exists", false};
  if (e.code == db::errc::server && e.server_code == 1406) return invalid("A value is too long: " + e.message);
  if (e.code == db::errc::server && (e.server_code == 1366 || e.server_code == 1292 || e.server_code == 1264))
    return invalid("A value does not fit its field: " + e.message);
  return failure_from(e);
}

// A client's name for a new document, as Frappe's validate_name takes it: trimmed, not empty,
// no '<' or '>', not the doctype's own name, at most 140 characters.
result<std::string, http::Problem> prompt_name(const rules::Doctype& d, std::optional<std::string> given) {
  std::string_view n = given ? std::string_view(*given) : std::string_view{};
  while (!n.empty() && std::isspace(static_cast<unsigned char>(n.front()))) n.remove_prefix(1);
  while (!n.empty() && std::isspace(static_cast<unsigned char>(n.back()))) n.remove_suffix(1);
  if (n.empty()) return invalid("Please set the document name: " + d.name + " is named by the client (name)");
  if (n.find_first_of("<>") != std::string_view::npos)
    return http::Problem{417, "NameError", "Name cannot contain special characters like '<', '>'", false};
  if (n == d.name || n.starts_with("New " + d.name)) return http::Problem{417, "NameError", "Name of " + d.name + " cannot be " + std::string(n), false};
  return std::string(n);
}

// Frappe's check_docstatus_transition (from the stored docstatus, 0 for a new document, to the
// one asked for) and the permission each move needs. Returns the action, or why not.
struct Transition {
  enum class Action { save, submit, update_after_submit, cancel } action = Action::save;
};
result<Transition, http::Problem> docstatus_transition(const rules::Doctype& d, std::int64_t from, std::int64_t to,
                                                 const std::vector<std::string>& roles) {
  auto may = [&](const char* action) {
    if (!d.is_submittable) return false;  // no role has submit or cancel on a doctype that is not submittable
    const auto* allowed = d.allowed(action);
    return !allowed || std::any_of(allowed->begin(), allowed->end(),
                                   [&](const std::string& r) { return std::find(roles.begin(), roles.end(), r) != roles.end(); });
  };
  auto denied = [&](const char* action) {
    return http::Problem{403, "PermissionError",
                   std::string("Not permitted to ") + action + " " + d.name + (d.is_submittable ? "" : ": it is not submittable"), false};
  };
  auto transition_error = [](std::string m) { return http::Problem{417, "DocstatusTransitionError", std::move(m), false}; };
  const http::Problem bad_value = invalid("Invalid docstatus " + std::to_string(to) + ": it is 0 (draft), 1 (submitted) or 2 (cancelled)");
  if (from == 0) {
    if (to == 0) return Transition{Transition::Action::save};
    if (to == 1) return may("submit") ? result<Transition, http::Problem>(Transition{Transition::Action::submit}) : denied("submit");
    if (to == 2) return transition_error("Cannot change docstatus from 0 (Draft) to 2 (Cancelled)");
    return bad_value;
  }
  if (from == 1) {
    if (to == 1)
      return may("submit") ? result<Transition, http::Problem>(Transition{Transition::Action::update_after_submit}) : denied("submit");
    if (to == 2) return may("cancel") ? result<Transition, http::Problem>(Transition{Transition::Action::cancel}) : denied("cancel");
    if (to == 0) return transition_error("Cannot change docstatus from 1 (Submitted) to 0 (Draft)");
    return bad_value;
  }
  return invalid("Cannot edit cancelled document");
}

bool numeric_type(std::string_view t) { return is_integer_type(t) || is_decimal_type(t); }

// Whether a value the client sent is the one stored (numbers by value, datetimes as Frappe
// writes them, text exactly).
bool same_value(const ColumnMeta* col, const std::optional<std::string>& sent, const std::optional<std::string>& stored) {
  const bool sent_empty = !sent || sent->empty(), stored_empty = !stored || stored->empty();
  if (sent_empty || stored_empty) {
    if (col && numeric_type(col->data_type))
      return (sent_empty ? 0.0 : std::strtod(sent->c_str(), nullptr)) == (stored_empty ? 0.0 : std::strtod(stored->c_str(), nullptr));
    return sent_empty == stored_empty;
  }
  if (col && numeric_type(col->data_type)) return std::strtod(sent->c_str(), nullptr) == std::strtod(stored->c_str(), nullptr);
  if (col && (col->data_type == "datetime" || col->data_type == "timestamp" || col->data_type == "time"))
    return json::frappe_datetime(*sent) == json::frappe_datetime(*stored);
  return *sent == *stored;
}

bool allowed_on_submit(const rules::Doctype& d, std::string_view field) {
  return std::find(d.allow_on_submit.begin(), d.allow_on_submit.end(), field) != d.allow_on_submit.end();
}

http::Problem changed_after_submit(const std::string& field, const std::optional<std::string>& from, const std::optional<std::string>& to) {
  return http::Problem{417, "UpdateAfterSubmitError",
                 "Not allowed to change " + field + " after submission from " + from.value_or("") + " to " + to.value_or(""), false};
}

// An update against the stored row, in Frappe's order (check_if_latest, then the docstatus
// transition, then what a submitted document lets change): the version the client saw, the
// fields nobody changes, the move between docstatus values and the fields after submission.
std::optional<http::Problem> check_update(const rules::Doctype& d, const TableMeta& table, const Parsed& parsed, const rules::Values& old,
                                    const std::string& url_name, const std::string& stored_name, std::int64_t from, std::int64_t to,
                                    const std::vector<std::string>& roles) {
  const std::string* stored_modified = old.find("modified");
  if (parsed.modified && stored_modified && json::frappe_datetime(*stored_modified) != json::frappe_datetime(*parsed.modified))
    return http::Problem{417, "TimestampMismatchError",
                   "Error: Document has been modified after you have opened it (" + json::frappe_datetime(*stored_modified) + ", " +
                       *parsed.modified + "). Please refresh to get the latest document.",
                   false};
  if (parsed.name && *parsed.name != url_name && *parsed.name != stored_name)
    return invalid("Renaming is not supported: the body's name is not " + stored_name);
  for (const auto& [field, sent] : parsed.constants) {
    const std::string* stored = old.find(field);
    if (stored && !same_value(table.find(field), sent, *stored))
      return http::Problem{417, "CannotChangeConstantError", "Value cannot be changed for " + field, false};
  }
  auto t = docstatus_transition(d, from, to, roles);
  if (!t) return t.error();
  if (t->action != Transition::Action::update_after_submit && t->action != Transition::Action::cancel) return std::nullopt;
  for (const auto& [field, sent] : parsed.row.values) {
    if (allowed_on_submit(d, field)) continue;
    const std::string* stored = old.find(field);
    const std::optional<std::string> was = stored ? std::optional<std::string>(*stored) : std::nullopt;
    if (!same_value(table.find(field), sent, was)) return changed_after_submit(field, was, sent);
  }
  return std::nullopt;
}

// A child table a submitted document may not change must come back as it is stored: the same
// rows in the same order, each field the client sent equal to the stored one.
std::optional<http::Problem> check_rows_unchanged(const ChildRows& sent, const db::ResultSet& stored) {
  if (sent.rows.size() != stored.rows.size())
    return http::Problem{417, "UpdateAfterSubmitError", "Not allowed to change " + sent.field + " after submission (rows added or removed)", false};
  for (std::size_t i = 0; i < sent.rows.size(); ++i) {
    const auto was = to_values(stored, i);
    for (const auto& [field, value] : sent.rows[i].values) {
      const std::string* s = was.find(field);
      const std::optional<std::string> before = s ? std::optional<std::string>(*s) : std::nullopt;
      if (!same_value(sent.table->find(field), value, before)) return changed_after_submit(sent.field + "." + field, before, value);
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view write_kind_name(rules::OriginKind o) {
  switch (o) {
    case rules::OriginKind::resource_insert: return "insert";
    case rules::OriginKind::resource_update: return "update";
    case rules::OriginKind::resource_delete: return "delete";
    default: return "?";
  }
}

namespace {

// Before any query: the body against the table and the doctype, and what a new document may be
// created as.
result<Parsed, http::Problem> prepare(const Catalog& catalog, const rules::RuleSet& rules, const rules::Doctype& d, const TableMeta& table,
                                      rules::OriginKind op, std::string_view body, const std::vector<std::string>& roles) {
  Parsed parsed;
  if (op != rules::OriginKind::resource_delete) {
    auto p = parse_body(body, catalog, rules, d, table);
    if (!p) return p.error();
    parsed = std::move(*p);
    if (auto m = check_mandatory(d, parsed.row, op == rules::OriginKind::resource_update)) return *m;
    for (const auto& c : parsed.children)
      for (const auto& r : c.rows)
        if (auto m = check_mandatory(*c.doctype, r, false)) return *m;
  }
  // A new document starts from draft.
  if (op == rules::OriginKind::resource_insert) {
    auto t = docstatus_transition(d, 0, parsed.docstatus.value_or(0), roles);
    if (!t) return t.error();
  }
  return parsed;
}

// The INSERT of a row, its columns limited to the table's.
std::pair<std::string, std::vector<std::optional<std::string>>> insert_sql(const TableMeta& t, const Row& row) {
  std::string cols, marks;
  std::vector<std::optional<std::string>> values;
  for (const auto& [k, v] : row.values) {
    if (!t.find(k)) continue;
    cols += (cols.empty() ? "" : ", ") + frappe::quote_ident(k);
    marks += marks.empty() ? "?" : ", ?";
    values.push_back(v);
  }
  return {"INSERT INTO " + frappe::quote_ident(t.table) + " (" + cols + ") VALUES (" + marks + ")", std::move(values)};
}

std::string tags_json(const std::vector<std::string>& tags) {
  std::string json = "[";
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (i) json += ',';
    json::append_string(json, tags[i]);
  }
  return json + ']';
}

// One attempt at a write, in one transaction: each step below is one part of Frappe's
// insert/save/delete, and stops doing anything once the write is refused or a statement failed.
class Attempt {
 public:
  struct Inputs {
    const Catalog& catalog;
    const rules::RuleSet& rules;
    const rules::Doctype& d;
    const TableMeta& table;
    rules::OriginKind op;
    const std::string& name;  // as the URL spells it; empty for inserts
    const std::string& user;
    const std::vector<std::string>& roles;
    const std::string& site;
    const Viewer* viewer;  // the ERP's permissions decide (proxy/perm), or nullptr
  };
  Attempt(const Inputs& in, Parsed parsed, db::Lease& lease, std::chrono::milliseconds timeout)
      : in_(in), parsed_(std::move(parsed)), tx_{lease, timeout, std::nullopt}, final_name_(in.name), docstatus_(parsed_.docstatus.value_or(0)) {}

  bool failed() const { return refusal_ || tx_.error; }
  const std::optional<http::Problem>& refusal() const { return refusal_; }
  const std::optional<db::Error>& error() const { return tx_.error; }
  const std::string& final_name() const { return final_name_; }

  asio::awaitable<void> run() {
    if (in_.op == rules::OriginKind::resource_insert) {
      co_await name_new();
      if (!failed()) co_await insert_row();
    } else {
      co_await lock_current();
      co_await drop_replaced_children();
      if (in_.op == rules::OriginKind::resource_delete) co_await delete_row();
      if (in_.op == rules::OriginKind::resource_update) co_await update_row();
    }
    co_await insert_children();
    co_await read_back();
    co_await record_outbox();
  }

  WriteOutcome outcome() {
    WriteOutcome out;
    out.status = in_.op == rules::OriginKind::resource_delete ? 202 : 200;
    out.body = std::move(answer_);
    out.tags = std::move(tags_);
    out.outbox_id = outbox_id_;
    out.name = final_name_;
    return out;
  }

 private:
  void add_tags(const rules::Doctype& d, const db::ResultSet& rows) {
    for (std::size_t i = 0; i < rows.rows.size(); ++i) {
      auto t = rules::row_tags(d, to_values(rows, i));
      tags_.insert(tags_.end(), t.begin(), t.end());
    }
  }

  asio::awaitable<void> check_all_links() {
    co_await check_links(tx_, in_.rules, in_.d, parsed_.row, refusal_);
    for (auto& c : parsed_.children)
      for (auto& r : c.rows) co_await check_links(tx_, in_.rules, *c.doctype, r, refusal_);
  }

  // The client's name only when the doctype is named by prompt (else a client could take the
  // next number of a series), from a field, or the next of a naming series (counted under the
  // row lock of tabSeries, in this transaction: no duplicates, no gaps on rollback).
  asio::awaitable<void> name_new() {
    const rules::Doctype& d = in_.d;
    if (d.naming.kind == rules::Naming::Kind::prompt) {
      auto n = prompt_name(d, parsed_.name);
      if (!n) refusal_ = n.error();
      else final_name_ = std::move(*n);
    } else if (d.naming.kind == rules::Naming::Kind::field) {
      const auto* f = parsed_.row.find(d.naming.value);
      if (empty_value(f)) refusal_ = invalid(d.naming.value + " is required: it names the " + d.name);
      else final_name_ = **f;
    } else if (d.naming.kind == rules::Naming::Kind::series) {
      auto [key, width] = series_key(d.naming.value);
      auto r = co_await tx_.exec(
          "INSERT INTO `tabSeries` (`name`, `current`) VALUES (?, LAST_INSERT_ID(1)) "
          "ON DUPLICATE KEY UPDATE `current` = LAST_INSERT_ID(`current` + 1)",
          key);
      if (r) {
        std::string n = std::to_string(r->insert_id);
        if (static_cast<int>(n.size()) < width) n.insert(0, static_cast<std::size_t>(width) - n.size(), '0');
        final_name_ = key + n;
      }
    } else {
      final_name_ = random_name();
    }
    if (!failed() && (final_name_.empty() || utf8_length(final_name_) > 140)) refusal_ = invalid("A name is 1 to 140 characters");
  }

  asio::awaitable<void> insert_row() {
    parsed_.row.set("name", final_name_);
    if (!refusal_) refusal_ = unwritable_field(nullptr);
    co_await check_all_links();
    Row full = parsed_.row;
    full.set("owner", in_.user);
    full.set("creation", now_);
    full.set("modified", now_);
    full.set("modified_by", in_.user);
    full.set("docstatus", std::to_string(docstatus_));
    auto [sql, values] = insert_sql(in_.table, full);
    if (!refusal_) co_await tx_.exec_v(std::move(sql), std::move(values));
  }

  // Update and delete work on the row as it is now, locked until commit.
  asio::awaitable<void> lock_current() {
    const rules::Doctype& d = in_.d;
    auto current = co_await tx_.exec(select_sql(in_.table) + " WHERE `name` = ? FOR UPDATE", in_.name);
    if (!current) co_return;
    if (current->rows.empty()) {
      refusal_ = http::Problem{404, "DoesNotExistError", d.name + " " + in_.name + " not found", false};
      co_return;
    }
    auto old = to_values(*current, 0);
    auto old_tags = rules::row_tags(d, old);
    tags_.insert(tags_.end(), old_tags.begin(), old_tags.end());
    // The name as stored: the URL may spell it as the collation allows.
    if (const std::string* stored = old.find("name")) final_name_ = *stored;
    const std::string* stored_docstatus = old.find("docstatus");
    stored_status_ = stored_docstatus ? std::strtoll(stored_docstatus->c_str(), nullptr, 10) : 0;
    if (in_.op == rules::OriginKind::resource_delete && stored_status_ == 1)
      refusal_ = invalid(d.name + " " + final_name_ + ": Submitted Record cannot be deleted. You must Cancel it first.");
    if (in_.op == rules::OriginKind::resource_update) {
      docstatus_ = parsed_.docstatus.value_or(stored_status_);
      refusal_ = check_update(d, in_.table, parsed_, old, in_.name, final_name_, stored_status_, docstatus_, in_.roles);
    }
    // The document as it is must be the user's to change: Frappe checks only the new version
    // of an update, which would let a restricted user take a document over by relinking it.
    if (in_.viewer && !refusal_) {
      const std::vector<db::ResultSet> as_is{*current};
      const bool remove = in_.op == rules::OriginKind::resource_delete;
      if (!perm::may(in_.viewer->permissions, in_.viewer->user, d.name, remove ? perm::delete_ : perm::write,
                     document_view(d.name, as_is, {})))
        refusal_ = remove ? http::Problem{403, "PermissionError", "User not allowed to delete " + d.name + ": " + final_name_, false}
                          : insufficient(perm::write);
    }
    if (in_.viewer && !refusal_ && in_.op == rules::OriginKind::resource_update) refusal_ = unwritable_field(&old);
  }

  http::Problem insufficient(perm::Right r) const {
    return http::Problem{403, "PermissionError", "Insufficient Permission for " + in_.d.name + " (" + std::string(perm::right_name(r)) + ")",
                         false};
  }

  // A field above the levels the user may write, given a value (insert) or changed (update):
  // refused. Frappe puts such a value back silently; pitstop says so, and lets a client send
  // back unchanged what it read.
  std::optional<http::Problem> unwritable_field(const rules::Values* stored) const {
    if (!in_.viewer) return std::nullopt;
    const perm::Doctype* meta = in_.viewer->permissions.doctype(in_.d.name);
    if (!meta) return std::nullopt;
    const perm::Grant g = perm::grant(in_.viewer->permissions, in_.viewer->user, in_.d.name);
    for (const auto& [field, sent] : parsed_.row.values) {
      const perm::Field* f = meta->field(field);
      if (!f || f->level == 0 || g.writes_level(f->level)) continue;
      const std::string* was = stored ? stored->find(field) : nullptr;
      // On insert, compared with an empty value: a number 0 (Frappe's default for numeric
      // fields) is no change either.
      const bool unchanged = same_value(in_.table.find(field), sent, was ? std::optional<std::string>(*was) : std::nullopt);
      if (!unchanged)
        return http::Problem{403, "PermissionError",
                             "Insufficient Permission for " + in_.d.name + ": " + field + " is at permission level " + std::to_string(f->level),
                             false};
    }
    return std::nullopt;
  }

  // The child rows that change go away: every table on delete, the named ones on update (on a
  // submitted document, only those it lets change; the others must come back as they are and
  // stay).
  asio::awaitable<void> drop_replaced_children() {
    const rules::Doctype& d = in_.d;
    const bool submitted_edit = in_.op == rules::OriginKind::resource_update && stored_status_ == 1;
    std::vector<std::string> kept;
    for (const auto& [field, child] : d.children) {
      if (failed()) break;
      const auto sent = std::find_if(parsed_.children.begin(), parsed_.children.end(), [&](const ChildRows& c) { return c.field == field; });
      const bool replaced = in_.op == rules::OriginKind::resource_delete || sent != parsed_.children.end();
      if (!replaced) continue;
      const rules::Doctype* cd = in_.rules.doctype(child);
      const TableMeta* ct = in_.catalog.table(child);
      if (!cd || !ct) continue;
      auto old_children = co_await tx_.exec(
          select_sql(*ct) + " WHERE `parent` = ? AND `parenttype` = ? AND `parentfield` = ? ORDER BY `idx` FOR UPDATE", final_name_, d.name,
          field);
      if (old_children && submitted_edit && !allowed_on_submit(d, field)) {
        refusal_ = check_rows_unchanged(*sent, *old_children);
        kept.push_back(field);
        continue;
      }
      if (old_children) add_tags(*cd, *old_children);
      co_await tx_.exec("DELETE FROM " + frappe::quote_ident(ct->table) + " WHERE `parent` = ? AND `parenttype` = ? AND `parentfield` = ?", final_name_,
                        d.name, field);
    }
    std::erase_if(parsed_.children, [&](const ChildRows& c) { return std::find(kept.begin(), kept.end(), c.field) != kept.end(); });
  }

  // Frappe refuses to delete what other documents link to (LinkExistsError).
  asio::awaitable<void> refuse_if_linked() {
    const rules::Doctype& d = in_.d;
    for (const auto& [other_name, other] : in_.rules.doctypes()) {
      for (const auto& [field, target] : other.links) {
        if (target != d.name || failed()) continue;
        auto r = co_await tx_.exec("SELECT " + std::string(other.parent.empty() ? "`name`" : "`parent`") + " FROM " + frappe::quote_ident(other.table) +
                                       " WHERE " + frappe::quote_ident(field) + " = ? LIMIT 1",
                                   final_name_);
        if (r && !r->rows.empty() && r->rows[0][0]) {
          const std::string& shown = other.parent.empty() ? other_name : other.parent;
          refusal_ = http::Problem{417, "LinkExistsError",
                                   "Cannot delete or cancel because " + d.name + " " + in_.name + " is linked with " + shown + " " + *r->rows[0][0],
                                   false};
        }
      }
    }
  }

  asio::awaitable<void> delete_row() {
    if (failed()) co_return;
    co_await refuse_if_linked();
    if (!failed()) co_await tx_.exec("DELETE FROM " + frappe::quote_ident(in_.table.table) + " WHERE `name` = ?", final_name_);
  }

  asio::awaitable<void> update_row() {
    if (failed()) co_return;
    co_await check_all_links();
    std::string sets;
    std::vector<std::optional<std::string>> values;
    for (const auto& [k, v] : parsed_.row.values) {
      if (k == "name" || !in_.table.find(k)) continue;
      sets += frappe::quote_ident(k) + " = ?, ";
      values.push_back(v);
    }
    if (docstatus_ != stored_status_ && in_.table.find("docstatus")) {
      sets += "`docstatus` = ?, ";
      values.emplace_back(std::to_string(docstatus_));
    }
    sets += "`modified` = ?, `modified_by` = ?";
    values.emplace_back(now_);
    values.emplace_back(in_.user);
    values.emplace_back(final_name_);
    if (refusal_) co_return;
    co_await tx_.exec_v("UPDATE " + frappe::quote_ident(in_.table.table) + " SET " + sets + " WHERE `name` = ?", values);
    // Rows the body did not replace follow the parent's docstatus too.
    if (docstatus_ != stored_status_) co_await set_children_docstatus(tx_, in_.catalog, in_.rules, in_.d, final_name_, docstatus_);
  }

  // New child rows (insert, or update of the tables the body names).
  asio::awaitable<void> insert_children() {
    for (const auto& c : parsed_.children) {
      if (failed()) break;
      int idx = 0;
      for (const auto& r : c.rows) {
        Row full = r;
        const auto* given = full.find("name");
        full.set("name", empty_value(given) ? random_name() : **given);
        full.set("parent", final_name_);
        full.set("parentfield", c.field);
        full.set("parenttype", in_.d.name);
        full.set("idx", std::to_string(++idx));
        full.set("docstatus", std::to_string(docstatus_));
        full.set("owner", in_.user);
        full.set("creation", now_);
        full.set("modified", now_);
        full.set("modified_by", in_.user);
        auto [sql, values] = insert_sql(*c.table, full);
        co_await tx_.exec_v(std::move(sql), std::move(values));
      }
    }
  }

  // The document as stored, for the answer and for the tags of the new version.
  asio::awaitable<void> read_back() {
    if (in_.op == rules::OriginKind::resource_delete) {
      answer_ = "{\"data\":\"ok\"}";
      co_return;
    }
    if (failed()) co_return;
    const rules::Doctype& d = in_.d;
    std::vector<db::ResultSet> results;
    auto parent = co_await tx_.exec(select_sql(in_.table) + " WHERE `name` = ?", final_name_);
    if (!parent || parent->rows.empty()) co_return;
    add_tags(d, *parent);
    results.push_back(std::move(*parent));
    std::vector<std::pair<std::string, const rules::Doctype*>> kids;
    for (const auto& [field, child] : d.children) {
      const rules::Doctype* cd = in_.rules.doctype(child);
      const TableMeta* ct = in_.catalog.table(child);
      if (!cd || !ct) continue;
      auto rows = co_await tx_.exec(select_sql(*ct) + " WHERE `parent` = ? AND `parenttype` = ? AND `parentfield` = ? ORDER BY `idx`",
                                    final_name_, d.name, field);
      if (!rows) break;
      add_tags(*cd, *rows);
      kids.emplace_back(field, cd);
      results.push_back(std::move(*rows));
    }
    if (tx_.error) co_return;
    // The version written must be the user's too (Frappe's check runs on it): else the whole
    // transaction goes back.
    if (in_.viewer) {
      const bool insert = in_.op == rules::OriginKind::resource_insert;
      if (!perm::may(in_.viewer->permissions, in_.viewer->user, d.name, insert ? perm::create : perm::write,
                     document_view(d.name, results, kids))) {
        refusal_ = insufficient(insert ? perm::create : perm::write);
        co_return;
      }
    }
    answer_ = render_doc(results, d.name, kids, in_.viewer);
  }

  // The outbox row, in the same transaction: committed with the write or not at all.
  asio::awaitable<void> record_outbox() {
    std::sort(tags_.begin(), tags_.end());
    tags_.erase(std::unique(tags_.begin(), tags_.end()), tags_.end());
    if (failed()) co_return;
    auto r = co_await tx_.exec("INSERT INTO `pitstop_outbox` (`tags`, `source`, `site`, `created`) VALUES (?, 'pitstop', ?, ?)",
                               tags_json(tags_), in_.site, now_);
    if (r) outbox_id_ = r->insert_id;
  }

  const Inputs& in_;
  Parsed parsed_;
  Tx tx_;
  const std::string now_ = now_text();
  std::string final_name_;
  std::int64_t stored_status_ = 0;
  std::int64_t docstatus_;  // the document's, after this write
  std::optional<http::Problem> refusal_;
  std::vector<std::string> tags_;
  std::string answer_;
  std::uint64_t outbox_id_ = 0;
};

}  // namespace

asio::awaitable<result<WriteOutcome, http::Problem>> write_doc(db::Pool& pool, const Catalog& catalog, const rules::RuleSet& rules,
                                                               const rules::Doctype& d, rules::OriginKind op, std::string name,
                                                               std::string_view body, const std::string& user,
                                                               const std::vector<std::string>& roles, const std::string& site,
                                                               const Viewer* viewer) {
  const TableMeta* table = catalog.table(d.name);
  if (!table) co_return http::Problem{404, "DoesNotExistError", "DocType " + d.name + " not found", false};
  auto parsed = prepare(catalog, rules, d, *table, op, body, roles);
  if (!parsed) co_return parsed.error();
  const Attempt::Inputs in{catalog, rules, d, *table, op, name, user, roles, site, viewer};

  for (int attempt = 0;; ++attempt) {
    auto lease = co_await pool.acquire();
    if (!lease) co_return failure_from(lease.error());
    auto begin = co_await (*lease)->query("START TRANSACTION", pool.query_timeout());
    if (!begin) co_return failure_from(begin.error());
    Attempt a(in, *parsed, *lease, pool.query_timeout());
    co_await a.run();
    if (a.failed()) {
      if (!(*lease)->broken()) co_await (*lease)->query("ROLLBACK", pool.query_timeout());
      if (a.refusal()) co_return *a.refusal();
      // A deadlock is resolved by running the transaction again, as Frappe's retry does.
      if (a.error()->code == db::errc::server && a.error()->server_code == 1213 && attempt < 2) continue;
      co_return from_db(*a.error(), d, a.final_name());
    }
    auto commit = co_await (*lease)->query("COMMIT", pool.query_timeout());
    if (!commit) co_return from_db(commit.error(), d, a.final_name());
    co_return a.outcome();
  }
}

}  // namespace pitstop::origin
