// The permission tables, read into one immutable Snapshot.

#include <algorithm>

#include "proxy/db/db.hpp"
#include "proxy/origin/origin.hpp"
#include "proxy/perm/perm.hpp"

namespace pitstop::perm {

namespace asio = boost::asio;
using boost::system::result;

std::string_view right_name(Right r) {
  switch (r) {
    case select: return "select";
    case read: return "read";
    case write: return "write";
    case create: return "create";
    case delete_: return "delete";
    case submit: return "submit";
    case cancel: return "cancel";
    case amend: return "amend";
    case report: return "report";
    case export_: return "export";
    case import_: return "import";
    case share: return "share";
    case print: return "print";
    case email: return "email";
  }
  return "?";
}

const Field* Doctype::field(std::string_view name) const {
  for (const auto& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

const Doctype* Snapshot::doctype(std::string_view name) const {
  auto it = doctypes_.find(name);
  return it == doctypes_.end() ? nullptr : &it->second;
}

const std::vector<UserPermission>& Snapshot::user_permissions(std::string_view user) const {
  static const std::vector<UserPermission> none;
  auto it = user_permissions_.find(user);
  return it == user_permissions_.end() ? none : it->second;
}

std::vector<const Share*> Snapshot::shares(std::string_view user, std::string_view doctype) const {
  std::vector<const Share*> out;
  auto collect = [&](std::string_view who) {
    auto it = shares_.find(who);
    if (it == shares_.end()) return;
    for (const auto& s : it->second)
      if (s.doctype == doctype) out.push_back(&s);
  };
  if (!user.empty()) collect(user);
  if (user != "Guest" && !user.empty()) collect("");  // frappe.share.get_shared: everyone, but not for Guest
  return out;
}

void Snapshot::Builder::perm_row(const std::string& doctype, PermRow row, bool custom) {
  (custom ? custom_ : standard_)[doctype].push_back(std::move(row));
}

void Snapshot::Builder::field(const std::string& doctype, Field f) { fields_[doctype].push_back(std::move(f)); }

void Snapshot::Builder::property(const std::string& doctype, const std::string& field, std::string_view property,
                                 const std::string& value) {
  auto it = fields_.find(doctype);
  if (it == fields_.end()) return;
  for (auto& f : it->second) {
    if (f.name != field) continue;
    // Frappe casts by property_type; these four are the ones permissions read.
    auto as_int = [&] { return std::atoi(value.c_str()); };
    if (property == "permlevel") f.level = as_int();
    else if (property == "ignore_user_permissions") f.ignore_user_permissions = as_int() != 0;
    else if (property == "options") f.options = value;
    else if (property == "fieldtype") f.type = value;
  }
}

void Snapshot::Builder::user_permission(const std::string& user, UserPermission p) { user_permissions_[user].push_back(std::move(p)); }

void Snapshot::Builder::share(const std::string& user, bool everyone, Share s) { shares_[everyone ? std::string() : user].push_back(std::move(s)); }

std::shared_ptr<const Snapshot> Snapshot::Builder::build() {
  auto s = std::make_shared<Snapshot>();
  // meta.py set_custom_permissions: any Custom DocPerm row for a doctype replaces all its rows.
  for (auto& [name, rows] : standard_) s->doctypes_[name].rows = std::move(rows);
  for (auto& [name, rows] : custom_) {
    auto& d = s->doctypes_[name];
    d.rows = std::move(rows);
    d.custom = true;
  }
  for (auto& [name, fields] : fields_) s->doctypes_[name].fields = std::move(fields);
  s->user_permissions_ = std::move(user_permissions_);
  s->shares_ = std::move(shares_);
  s->strict_ = strict_;
  return s;
}

namespace {

constexpr const char* kRightColumns = "`select`, `read`, `write`, `create`, `delete`, `submit`, `cancel`, `amend`, `report`, `export`, "
                                      "`import`, `share`, `print`, `email`";

bool flag(const std::optional<std::string>& v) { return v && !v->empty() && *v != "0"; }
std::string text(const std::optional<std::string>& v) { return v ? *v : std::string(); }
int number(const std::optional<std::string>& v) { return v ? std::atoi(v->c_str()) : 0; }

// Columns from `first`: the fourteen rights in Right's order.
Rights rights_from(const std::vector<std::optional<std::string>>& row, std::size_t first) {
  Rights r = 0;
  for (std::size_t i = 0; i < 14; ++i)
    if (flag(row[first + i])) r |= static_cast<Rights>(1u << i);
  return r;
}

std::vector<origin::Sql> statements() {
  const std::string rights = kRightColumns;
  return {
      {"SELECT `parent`, `role`, `permlevel`, `if_owner`, " + rights +
           " FROM `tabDocPerm` WHERE `parenttype` = 'DocType' AND `parentfield` = 'permissions' ORDER BY `parent`, `idx`",
       {}},
      {"SELECT `parent`, `role`, `permlevel`, `if_owner`, " + rights + " FROM `tabCustom DocPerm` ORDER BY `parent`, `idx`", {}},
      {"SELECT `parent`, `fieldname`, `fieldtype`, `options`, `permlevel`, `ignore_user_permissions` FROM `tabDocField` "
       "WHERE `parenttype` = 'DocType' AND `fieldname` IS NOT NULL ORDER BY `parent`, `idx`",
       {}},
      {"SELECT `dt`, `fieldname`, `fieldtype`, `options`, `permlevel`, `ignore_user_permissions` FROM `tabCustom Field` "
       "WHERE `fieldname` IS NOT NULL ORDER BY `dt`, `idx`",
       {}},
      {"SELECT `doc_type`, `field_name`, `property`, `value` FROM `tabProperty Setter` WHERE `doctype_or_field` = 'DocField' "
       "AND `property` IN ('permlevel', 'ignore_user_permissions', 'options', 'fieldtype') ORDER BY `creation`, `name`",
       {}},
      {"SELECT `user`, `allow`, `for_value`, `applicable_for` FROM `tabUser Permission` ORDER BY `user`, `allow`, `for_value`", {}},
      {"SELECT `user`, `everyone`, `share_doctype`, `share_name`, `read`, `write`, `share`, `submit` FROM `tabDocShare` ORDER BY `share_doctype`, `share_name`, `name`", {}},
      {"SELECT `value` FROM `tabSingles` WHERE `doctype` = 'System Settings' AND `field` = 'apply_strict_user_permissions'", {}},
  };
}

void add_perm_rows(Snapshot::Builder& b, const db::ResultSet& rs, bool custom) {
  for (const auto& row : rs.rows) {
    if (!row[0] || !row[1]) continue;
    b.perm_row(*row[0], PermRow{*row[1], number(row[2]), flag(row[3]), rights_from(row, 4)}, custom);
  }
}

void add_fields(Snapshot::Builder& b, const db::ResultSet& rs) {
  for (const auto& row : rs.rows) {
    if (!row[0] || !row[1]) continue;
    b.field(*row[0], Field{*row[1], text(row[2]), text(row[3]), number(row[4]), flag(row[5])});
  }
}

}  // namespace

asio::awaitable<result<std::shared_ptr<const Snapshot>, http::Problem>> load(db::Pool& pool, std::size_t max_rows) {
  auto r = co_await origin::run_statements(pool, statements());
  if (!r) co_return r.error();
  const auto& sets = *r;
  for (const auto& rs : sets)
    if (rs.rows.size() > max_rows)
      co_return http::Problem{503, "ServiceUnavailable",
                              "A permission table holds more than " + std::to_string(max_rows) + " rows; pitstop keeps them in memory", true};
  Snapshot::Builder b;
  add_perm_rows(b, sets[0], false);
  add_perm_rows(b, sets[1], true);
  add_fields(b, sets[2]);
  add_fields(b, sets[3]);
  for (const auto& row : sets[4].rows)
    if (row[0] && row[1] && row[2]) b.property(*row[0], *row[1], *row[2], text(row[3]));
  for (const auto& row : sets[5].rows)
    if (row[0] && row[1] && row[2]) b.user_permission(*row[0], UserPermission{*row[1], *row[2], text(row[3])});
  for (const auto& row : sets[6].rows) {
    if (!row[2] || !row[3]) continue;
    const bool everyone = flag(row[1]);
    if (!everyone && !row[0]) continue;
    Rights rights = 0;
    if (flag(row[4])) rights |= read;
    if (flag(row[5])) rights |= write;
    if (flag(row[6])) rights |= share;
    if (flag(row[7])) rights |= submit;
    b.share(text(row[0]), everyone, Share{*row[2], *row[3], rights});
  }
  b.strict(!sets[7].rows.empty() && flag(sets[7].rows[0][0]));
  co_return b.build();
}

}  // namespace pitstop::perm
