#pragma once
// The ERP's own permissions, read from its tables and decided as Frappe v15 decides them
// (frappe/permissions.py, frappe/model/db_query.py): role permissions per doctype (tabDocPerm,
// replaced per doctype by tabCustom DocPerm), owner-only rights, field permission levels, user
// permissions on linked values and shared documents. A Snapshot is immutable; a change in the
// tables makes a new one.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/http/problem.hpp"

namespace pitstop::db {
class Pool;
}

namespace pitstop::perm {

// Frappe's rights (frappe/permissions.py `rights`).
enum Right : std::uint16_t {
  select = 1 << 0,
  read = 1 << 1,
  write = 1 << 2,
  create = 1 << 3,
  delete_ = 1 << 4,
  submit = 1 << 5,
  cancel = 1 << 6,
  amend = 1 << 7,
  report = 1 << 8,
  export_ = 1 << 9,
  import_ = 1 << 10,
  share = 1 << 11,
  print = 1 << 12,
  email = 1 << 13,
};
using Rights = std::uint16_t;
std::string_view right_name(Right r);

// One DocPerm row: a role's rights at one permission level.
struct PermRow {
  std::string role;
  int level = 0;
  bool if_owner = false;
  Rights rights = 0;
};

struct Field {
  std::string name;
  std::string type;     // Frappe's fieldtype: Link, Table, Data, …
  std::string options;  // a Link's or a Table's doctype
  int level = 0;
  bool ignore_user_permissions = false;
  bool is_link() const { return type == "Link" && !options.empty() && options != "[Select]"; }
};

struct Doctype {
  std::vector<PermRow> rows;  // the effective rows: custom ones when the doctype has any
  bool custom = false;
  std::vector<Field> fields;  // DocField, then Custom Field, Property Setters applied
  const Field* field(std::string_view name) const;
};

struct UserPermission {
  std::string allow;           // the restricted doctype
  std::string value;           // for_value
  std::string applicable_for;  // empty: every doctype
};

struct Share {
  std::string doctype;
  std::string name;
  Rights rights = 0;  // read, write, share, submit
};

class Snapshot {
 public:
  // Built row by row by the loader (and by tests).
  class Builder;

  const Doctype* doctype(std::string_view name) const;
  const std::vector<UserPermission>& user_permissions(std::string_view user) const;
  // The shares `user` holds on `doctype` (its own, and those with everyone unless a Guest).
  std::vector<const Share*> shares(std::string_view user, std::string_view doctype) const;
  bool strict() const { return strict_; }  // System Settings' apply_strict_user_permissions
  std::size_t doctypes() const { return doctypes_.size(); }

 private:
  std::map<std::string, Doctype, std::less<>> doctypes_;
  std::map<std::string, std::vector<UserPermission>, std::less<>> user_permissions_;
  std::map<std::string, std::vector<Share>, std::less<>> shares_;  // by user; "" = everyone
  bool strict_ = false;
};

class Snapshot::Builder {
 public:
  void perm_row(const std::string& doctype, PermRow row, bool custom);
  void field(const std::string& doctype, Field f);
  // A Property Setter on a field: permlevel, ignore_user_permissions, options or fieldtype.
  void property(const std::string& doctype, const std::string& field, std::string_view property, const std::string& value);
  void user_permission(const std::string& user, UserPermission p);
  void share(const std::string& user, bool everyone, Share s);
  void strict(bool on) { strict_ = on; }
  std::shared_ptr<const Snapshot> build();

 private:
  std::map<std::string, std::vector<PermRow>, std::less<>> standard_, custom_;
  std::map<std::string, std::vector<Field>, std::less<>> fields_;
  std::map<std::string, std::vector<UserPermission>, std::less<>> user_permissions_;
  std::map<std::string, std::vector<Share>, std::less<>> shares_;
  bool strict_ = false;
};

// Reads every permission table in one consistent snapshot. Bounded: a table over `max_rows`
// rows is a problem, not a partial model.
boost::asio::awaitable<boost::system::result<std::shared_ptr<const Snapshot>, http::Problem>> load(db::Pool& pool,
                                                                                                std::size_t max_rows = 200000);

// Who asks: the user and the roles Frappe gives them (roles()).
struct User {
  std::string name;
  std::vector<std::string> roles;
  bool administrator() const { return name == "Administrator"; }
  bool guest() const { return name == "Guest" || name.empty(); }
  bool has_role(std::string_view role) const;
};
// frappe.get_roles: a Guest holds Guest only; anyone else their tabHas Role roles (less the
// automatic ones, which only Frappe grants) plus All and Guest.
User user_of(std::string name, const std::vector<std::string>& has_roles);

// What a user may do with a doctype, before any document is seen (get_role_permissions).
struct Grant {
  bool known = false;          // the doctype has permission rows (else: the rules file decides)
  bool administrator = false;  // everything, no filter
  Rights rights = 0;           // at level 0; owner-only read and select count as granted
  Rights owner_only = 0;       // granted only through if_owner rows (never create)
  std::vector<int> read_levels;   // levels whose fields the user may read (sorted)
  std::vector<int> write_levels;  // ... and write
  bool may(Right r) const { return administrator || (rights & r) != 0; }
  bool reads_level(int level) const;
  bool writes_level(int level) const;
};
Grant grant(const Snapshot& s, const User& u, std::string_view doctype);

// Before any document is seen: may `u` act on `doctype` at all? The refusal (403) or nothing;
// what depends on the document (owner-only rights, user permissions, shares) is judged on it.
// `reveal`: an answer shows records of the doctype beyond any one document (a named query's),
// so only a user who may read every record of it may have it.
enum class Action { read_document, read_list, insert, update, remove, reveal };
std::optional<http::Problem> refusal(const Snapshot& s, const User& u, std::string_view doctype, Action a);

// A document as the checks need it: its name, owner, and the values of its fields (the
// parent's, then each child row's with its doctype).
struct Row {
  std::string_view doctype;
  std::vector<std::pair<std::string_view, std::optional<std::string_view>>> values;
  std::optional<std::string_view> value(std::string_view field) const;
};
struct DocView {
  std::string_view name;
  std::string_view owner;
  Row parent;
  std::vector<Row> children;
};
// has_permission(doctype, right, doc): owner-only rights, user permissions, then shares.
bool may(const Snapshot& s, const User& u, std::string_view doctype, Right r, const DocView& doc);

// The conditions a list of `doctype` is read under (build_match_conditions), or a refusal.
struct ListScope {
  std::optional<http::Problem> refused;
  bool administrator = false;
  bool only_shared = false;          // no role read: the shared documents only
  std::string owner;                 // non-empty: `owner` = this user
  struct Restriction {
    std::string field;               // a Link field, or "name"
    std::vector<std::string> values;
  };
  std::vector<Restriction> restrictions;  // AND-ed; an empty value passes unless strict
  bool strict = false;
  std::vector<std::string> shared;   // names OR-ed in (or, with only_shared, the only ones)
  bool unrestricted() const { return administrator || (!only_shared && owner.empty() && restrictions.empty()); }
};
ListScope list_scope(const Snapshot& s, const User& u, std::string_view doctype);

// A stable digest of everything that decides what `u` sees of `doctype` (the grant, the levels,
// the user permissions that apply to it and its children, the shares, the user's name when
// owner-only rights apply): users with the same fingerprint see the same answers.
std::string fingerprint(const Snapshot& s, const User& u, std::string_view doctype);

}  // namespace pitstop::perm
