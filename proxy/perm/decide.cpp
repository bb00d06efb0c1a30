// Decisions over a Snapshot, as Frappe v15 makes them. The functions follow frappe/permissions.py
// (get_role_permissions, get_doc_permissions, has_user_permission) and frappe/model/db_query.py
// (build_match_conditions, add_user_permissions) step by step; where a step is surprising, the
// comment names the Frappe line it mirrors.

#include <algorithm>
#include <array>

#include <openssl/evp.h>

#include "proxy/perm/perm.hpp"

namespace pitstop::perm {

namespace {

constexpr std::array<std::string_view, 4> kAutomaticRoles = {"Guest", "All", "Desk User", "Administrator"};

bool ieq(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

void add_level(std::vector<int>& levels, int level) {
  auto it = std::lower_bound(levels.begin(), levels.end(), level);
  if (it == levels.end() || *it != level) levels.insert(it, level);
}

// The user permissions on `allow` that apply when `applicable` is being decided (an empty
// applicable_for applies everywhere). Empty: no restriction.
std::vector<std::string> allowed_values(const std::vector<UserPermission>& ups, std::string_view allow, std::string_view applicable) {
  std::vector<std::string> out;
  for (const auto& p : ups)
    if (p.allow == allow && (p.applicable_for.empty() || p.applicable_for == applicable)) out.push_back(p.value);
  return out;
}

bool contains(const std::vector<std::string>& v, std::string_view x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// has_user_permission: the document's own name, then every Link field of the parent and of each
// child row, judged by the permissions applicable to the parent's doctype.
bool passes_user_permissions(const Snapshot& s, const User& u, std::string_view doctype, const DocView& doc) {
  if (u.administrator() || u.guest()) return true;  // get_user_permissions is {} for both
  const auto& ups = s.user_permissions(u.name);
  if (ups.empty()) return true;
  const auto own = allowed_values(ups, doctype, doctype);
  if (!own.empty() && !contains(own, doc.name)) return false;
  auto row_passes = [&](const Row& row) {
    const Doctype* meta = s.doctype(row.doctype);
    if (!meta) return true;
    for (const auto& f : meta->fields) {
      if (!f.is_link() || f.ignore_user_permissions) continue;
      const auto value = row.value(f.name);
      const bool empty = !value || value->empty();
      if (empty && !s.strict()) continue;
      const auto allowed = allowed_values(ups, f.options, doctype);
      if (!allowed.empty() && (empty || !contains(allowed, *value))) return false;
    }
    return true;
  };
  if (!row_passes(doc.parent)) return false;
  return std::all_of(doc.children.begin(), doc.children.end(), row_passes);
}

// Rights a share can give, and the share right each maps to (email and print ride on read).
std::optional<Right> shared_as(Right r) {
  switch (r) {
    case read:
    case email:
    case print: return read;
    case write: return write;
    case share: return share;
    case submit: return submit;
    default: return std::nullopt;
  }
}

// Owner-only read or select and neither granted outright (db_query requires_owner_constraint).
bool owner_constrained(const Grant& g) {
  if (g.owner_only == 0) return false;
  for (Right r : {select, read})
    if ((g.rights & r) && !(g.owner_only & r)) return false;
  return true;
}

std::vector<ListScope::Restriction> restrictions_of(const Snapshot& s, const User& u, std::string_view doctype) {
  std::vector<ListScope::Restriction> out;
  const auto& ups = s.user_permissions(u.name);
  if (ups.empty()) return out;
  auto consider = [&](const std::string& field, const std::string& target) {
    auto values = allowed_values(ups, target, doctype);
    if (!values.empty()) out.push_back({field, std::move(values)});
  };
  if (const Doctype* meta = s.doctype(doctype))
    for (const auto& f : meta->fields)
      if (f.is_link() && !f.ignore_user_permissions) consider(f.name, f.options);
  consider("name", std::string(doctype));
  return out;
}

std::vector<std::string> shared_names(const Snapshot& s, const User& u, std::string_view doctype) {
  std::vector<std::string> out;
  for (const Share* sh : s.shares(u.name, doctype))
    if ((sh->rights & read) && !contains(out, sh->name)) out.push_back(sh->name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool User::has_role(std::string_view role) const { return std::find(roles.begin(), roles.end(), role) != roles.end(); }

User user_of(std::string name, const std::vector<std::string>& has_roles) {
  User u;
  u.name = std::move(name);
  if (u.guest()) {
    u.name = "Guest";
    u.roles = {"Guest"};
    return u;
  }
  for (const auto& r : has_roles)
    if (std::find(kAutomaticRoles.begin(), kAutomaticRoles.end(), r) == kAutomaticRoles.end() && !u.has_role(r)) u.roles.push_back(r);
  u.roles.emplace_back("All");
  u.roles.emplace_back("Guest");
  if (u.administrator()) u.roles.emplace_back("Administrator");
  return u;
}

std::optional<std::string_view> Row::value(std::string_view field) const {
  for (const auto& [name, v] : values)
    if (name == field) return v;
  return std::nullopt;
}

bool Grant::reads_level(int level) const { return administrator || std::binary_search(read_levels.begin(), read_levels.end(), level); }
bool Grant::writes_level(int level) const { return administrator || std::binary_search(write_levels.begin(), write_levels.end(), level); }

Grant grant(const Snapshot& s, const User& u, std::string_view doctype) {
  Grant g;
  const Doctype* d = s.doctype(doctype);
  g.known = d && !d->rows.empty();
  if (u.administrator()) {
    g.administrator = true;
    g.rights = static_cast<Rights>(0x3fff);
    return g;
  }
  if (!d) return g;
  Rights any = 0, outright = 0;
  bool has_if_owner = false;
  for (const auto& row : d->rows) {
    if (!u.has_role(row.role)) continue;
    if (row.rights & read) add_level(g.read_levels, row.level);
    if (row.rights & write) add_level(g.write_levels, row.level);
    if (row.level != 0) continue;  // only level 0 decides access to doctypes and documents
    any |= row.rights;
    if (row.if_owner) has_if_owner = true;
    else outright |= row.rights;
  }
  g.rights = any;
  if (has_if_owner) {
    // get_role_permissions: a right given only by if_owner rows is the owner's; at doctype level
    // read and select still open the list (filtered by owner), the rest count as not granted.
    g.owner_only = static_cast<Rights>(any & ~outright & ~create);
    g.rights = static_cast<Rights>(any & ~(g.owner_only & ~(read | select)));
  }
  return g;
}

bool may(const Snapshot& s, const User& u, std::string_view doctype, Right r, const DocView& doc) {
  if (u.administrator()) return true;
  const Grant g = grant(s, u, doctype);
  const bool is_owner = !doc.owner.empty() && ieq(doc.owner, u.name);
  Rights effective = static_cast<Rights>((g.rights & ~g.owner_only) | (is_owner ? g.owner_only : 0));
  // get_doc_permissions: failing user permissions leaves an owner the owner-only rights alone.
  if (!passes_user_permissions(s, u, doctype, doc)) effective = static_cast<Rights>((is_owner ? g.owner_only : 0) & ~create);
  if (effective & r) return true;
  // A share opens the document whatever else said no.
  const auto as = shared_as(r);
  if (!as) return false;
  for (const Share* sh : s.shares(u.name, doctype))
    if (sh->name == doc.name && (sh->rights & *as)) return true;
  return false;
}

std::optional<http::Problem> refusal(const Snapshot& s, const User& u, std::string_view doctype, Action a) {
  if (u.administrator()) return std::nullopt;
  const Grant g = grant(s, u, doctype);
  auto shared_for = [&](Rights r) {
    for (const Share* sh : s.shares(u.name, doctype))
      if (sh->rights & r) return true;
    return false;
  };
  auto insufficient = [&](Right r) {
    return http::Problem{403, "PermissionError", "Insufficient Permission for " + std::string(doctype) + " (" + std::string(right_name(r)) + ")"};
  };
  switch (a) {
    case Action::read_list:
      return list_scope(s, u, doctype).refused;
    case Action::read_document:
      // Some document of it must be readable (owner-only read and shares count): else even a
      // missing one is refused, so that the answer does not tell what exists.
      if (g.may(read) || shared_for(read)) return std::nullopt;
      return http::Problem{403, "PermissionError", "No permission for " + std::string(doctype)};
    case Action::insert:
      if (g.may(create)) return std::nullopt;
      return insufficient(create);
    case Action::update:
      if (g.may(write) || (g.owner_only & write) || shared_for(write)) return std::nullopt;
      return insufficient(write);
    case Action::remove:
      if (g.may(delete_) || (g.owner_only & delete_)) return std::nullopt;
      return insufficient(delete_);
    case Action::reveal: {
      auto scope = list_scope(s, u, doctype);
      if (scope.refused) return scope.refused;
      if (scope.unrestricted()) return std::nullopt;
      return http::Problem{403, "PermissionError",
                           "No permission for this answer: it shows " + std::string(doctype) + " records beyond those you may read"};
    }
  }
  return std::nullopt;
}

ListScope list_scope(const Snapshot& s, const User& u, std::string_view doctype) {
  ListScope out;
  out.strict = s.strict();
  if (u.administrator()) {
    out.administrator = true;
    return out;
  }
  const Grant g = grant(s, u, doctype);
  const std::string name(doctype);
  // check_read_permission: read (select when that is all the user has), or any share of one.
  const bool role_read = g.may(read) || g.may(select);
  if (!role_read && shared_names(s, u, doctype).empty()) {
    out.refused = http::Problem{403, "PermissionError", "No permission for " + name};
    return out;
  }
  bool fetch_shared = false;
  // Frappe takes this path only when the user also has no user permission on the doctype; with
  // one, it adds no condition at all and lists every row (its v15 behaviour, a hole): pitstop
  // lists the shared documents only.
  if (!role_read) {
    out.only_shared = true;
    out.shared = shared_names(s, u, doctype);
    return out;
  }
  if (owner_constrained(g)) {
    out.owner = u.name;  // and user permissions are not applied (db_query skips them here)
    fetch_shared = true;
  } else if (role_read) {
    out.restrictions = restrictions_of(s, u, doctype);
    fetch_shared = !out.restrictions.empty();
  }
  if (fetch_shared) out.shared = shared_names(s, u, doctype);
  return out;
}

namespace {

// The doctype's own rules (its permission rows, its fields and its children's): the same user
// inputs mean the same view only under the same rules, and an entry kept under the old ones must
// not be found under the new (a Link field added restricts what a user permission filters).
void append_meta(std::string& text, const Snapshot& s, std::string_view doctype) {
  const Doctype* d = s.doctype(doctype);
  if (!d) return;
  for (const auto& r : d->rows)
    text.append(r.role).append(":").append(std::to_string(r.level)).append(r.if_owner ? ":o:" : ":-:").append(std::to_string(r.rights)).push_back('\x1e');
  text.push_back('\x1f');
  auto fields = [&](const Doctype& m) {
    for (const auto& f : m.fields)
      text.append(f.name).append(":").append(f.type).append(":").append(f.options).append(":").append(std::to_string(f.level))
          .append(f.ignore_user_permissions ? ":i" : ":-")
          .push_back('\x1e');
    text.push_back('\x1f');
  };
  fields(*d);
  for (const auto& f : d->fields)
    if (f.type == "Table" || f.type == "Table MultiSelect")
      if (const Doctype* child = s.doctype(f.options)) fields(*child);
}

}  // namespace

std::string fingerprint(const Snapshot& s, const User& u, std::string_view doctype) {
  // A canonical text of what decides, hashed: fields are separated by \x1f, lists by \x1e.
  std::string text("pitstop-perm-1\x1f");
  text.append(doctype).push_back('\x1f');
  append_meta(text, s, doctype);
  const Grant g = grant(s, u, doctype);
  if (g.administrator) {
    text += "admin";
  } else {
    text += std::to_string(g.rights) + '\x1f' + std::to_string(g.owner_only) + '\x1f';
    for (int l : g.read_levels) text += std::to_string(l) + ',';
    text.push_back('\x1f');
    // The owner's own documents differ from user to user: the name is in.
    if (g.owner_only) text.append(u.name);
    text.push_back('\x1f');
    const auto& ups = s.user_permissions(u.name);
    // Every user permission that can decide a document of this doctype or of its children: on
    // the doctype itself and on any doctype a Link field of either names.
    std::vector<std::string> targets{std::string(doctype)};
    auto links_of = [&](std::string_view dt) {
      if (const Doctype* meta = s.doctype(dt))
        for (const auto& f : meta->fields)
          if (f.is_link() && !f.ignore_user_permissions && !contains(targets, f.options)) targets.push_back(f.options);
    };
    links_of(doctype);
    if (const Doctype* meta = s.doctype(doctype))
      for (const auto& f : meta->fields)
        if (f.type == "Table" || f.type == "Table MultiSelect") links_of(f.options);
    std::sort(targets.begin(), targets.end());
    for (const auto& t : targets) {
      auto values = allowed_values(ups, t, doctype);
      if (values.empty()) continue;
      std::sort(values.begin(), values.end());
      text.append(t).push_back('=');
      for (const auto& v : values) text.append(v).push_back('\x1e');
      text.push_back('\x1f');
    }
    text += s.strict() ? "strict" : "lenient";
    text.push_back('\x1f');
    std::vector<std::string> shares;
    for (const Share* sh : s.shares(u.name, doctype)) shares.push_back(sh->name + ':' + std::to_string(sh->rights));
    std::sort(shares.begin(), shares.end());
    for (const auto& sh : shares) text.append(sh).push_back('\x1e');
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 16 && i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

}  // namespace pitstop::perm
