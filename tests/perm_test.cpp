// The ERP's permissions as pitstop decides them (proxy/perm): each rule of Frappe v15 with a user
// it allows and one it refuses, on snapshots built in memory, and the loader against the real
// MariaDB (doctypes of the test's own, so that parallel tests never see its rows).

#include <gtest/gtest.h>

#include <random>

#include <boost/asio/io_context.hpp>

#include "proxy/db/db.hpp"
#include "proxy/perm/perm.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
namespace perm = pitstop::perm;
using namespace std::chrono_literals;

namespace {

perm::PermRow row(std::string role, perm::Rights rights, int level = 0, bool if_owner = false) {
  return perm::PermRow{std::move(role), level, if_owner, rights};
}

perm::Field link_field(std::string name, std::string target) { return perm::Field{std::move(name), "Link", std::move(target), 0, false}; }
perm::Field data(std::string name, int level = 0) { return perm::Field{std::move(name), "Data", "", level, false}; }

// An order with a customer link, a child table of items linking to Item, and a level-1 field.
perm::Snapshot::Builder workshop() {
  perm::Snapshot::Builder b;
  b.perm_row("Order", row("Advisor", perm::read | perm::write | perm::create), false);
  b.perm_row("Order", row("Manager", perm::read | perm::write | perm::create | perm::delete_), false);
  b.perm_row("Order", row("Manager", perm::read | perm::write, 1), false);
  b.perm_row("Order", row("Auditor", perm::read, 1), false);
  b.field("Order", link_field("customer", "Customer"));
  b.field("Order", data("notes", 1));
  b.field("Order", perm::Field{"items", "Table", "Order Item", 0, false});
  b.field("Order Item", link_field("item_code", "Item"));
  b.perm_row("Customer", row("Advisor", perm::read), false);
  return b;
}

perm::DocView order(std::string_view name, std::string_view owner, std::optional<std::string_view> customer,
                    std::vector<std::string_view> items = {}) {
  perm::DocView d;
  d.name = name;
  d.owner = owner;
  d.parent.doctype = "Order";
  d.parent.values = {{"customer", customer}, {"notes", std::string_view("x")}};
  for (auto item : items) d.children.push_back(perm::Row{"Order Item", {{"item_code", item}}});
  return d;
}

}  // namespace

TEST(Permissions, RolesAreFrappesOwnAutomaticOnesAddedAndNeverTakenFromTheTable) {
  auto u = perm::user_of("a@x", {"Advisor", "Administrator", "Guest"});
  EXPECT_TRUE(u.has_role("Advisor"));
  EXPECT_TRUE(u.has_role("All"));
  EXPECT_TRUE(u.has_role("Guest"));
  EXPECT_FALSE(u.has_role("Administrator")) << "a Has Role row cannot make a user Administrator";
  auto g = perm::user_of("Guest", {"Advisor"});
  EXPECT_EQ(g.roles, std::vector<std::string>{"Guest"});
  EXPECT_TRUE(perm::user_of("Administrator", {}).administrator());
}

TEST(Permissions, LevelZeroRowsDecideTheDoctypeAndHigherLevelsOnlyFields) {
  auto s = workshop().build();
  const auto advisor = perm::user_of("adv@x", {"Advisor"});
  const auto auditor = perm::user_of("aud@x", {"Auditor"});
  const auto manager = perm::user_of("man@x", {"Manager"});
  auto ga = perm::grant(*s, advisor, "Order");
  EXPECT_TRUE(ga.known);
  EXPECT_TRUE(ga.may(perm::read));
  EXPECT_FALSE(ga.may(perm::delete_));
  EXPECT_FALSE(ga.reads_level(1));
  auto gu = perm::grant(*s, auditor, "Order");
  EXPECT_FALSE(gu.may(perm::read)) << "read at level 1 alone does not open the doctype";
  EXPECT_TRUE(gu.reads_level(1));
  auto gm = perm::grant(*s, manager, "Order");
  EXPECT_TRUE(gm.may(perm::delete_));
  EXPECT_TRUE(gm.reads_level(1));
  EXPECT_TRUE(gm.writes_level(1));
  EXPECT_FALSE(perm::grant(*s, advisor, "Unknown").known);
  EXPECT_TRUE(perm::grant(*s, perm::user_of("Administrator", {}), "Unknown").may(perm::delete_));
}

TEST(Permissions, CustomRowsReplaceTheStandardOnesOfTheirDoctypeOnly) {
  auto b = workshop();
  b.perm_row("Order", row("Auditor", perm::read), true);
  auto s = b.build();
  EXPECT_FALSE(perm::grant(*s, perm::user_of("adv@x", {"Advisor"}), "Order").may(perm::read)) << "no merge with tabDocPerm";
  EXPECT_TRUE(perm::grant(*s, perm::user_of("aud@x", {"Auditor"}), "Order").may(perm::read));
  EXPECT_TRUE(perm::grant(*s, perm::user_of("adv@x", {"Advisor"}), "Customer").may(perm::read)) << "other doctypes keep theirs";
}

TEST(Permissions, OwnerOnlyRightsOpenTheListButOnlyTheOwnersDocuments) {
  perm::Snapshot::Builder b;
  b.perm_row("Order", row("Clerk", perm::read | perm::write | perm::create, 0, true), false);
  b.perm_row("Order", row("Viewer", perm::read), false);
  b.perm_row("Order", row("Viewer", perm::delete_, 0, true), false);
  auto s = b.build();
  const auto clerk = perm::user_of("clerk@x", {"Clerk"});
  auto g = perm::grant(*s, clerk, "Order");
  EXPECT_TRUE(g.may(perm::read)) << "owner-only read still opens the list";
  EXPECT_FALSE(g.may(perm::write)) << "owner-only write is not a doctype-level write";
  EXPECT_TRUE(g.may(perm::create)) << "create is never owner-only";
  EXPECT_TRUE(perm::may(*s, clerk, "Order", perm::write, order("O-1", "CLERK@x", {})));
  EXPECT_FALSE(perm::may(*s, clerk, "Order", perm::read, order("O-2", "other@x", {})));
  auto scope = perm::list_scope(*s, clerk, "Order");
  EXPECT_FALSE(scope.refused);
  EXPECT_EQ(scope.owner, "clerk@x");
  // Read outright, delete owner-only: every document is readable, only one's own deletable.
  const auto viewer = perm::user_of("view@x", {"Viewer"});
  EXPECT_TRUE(perm::list_scope(*s, viewer, "Order").unrestricted());
  EXPECT_TRUE(perm::may(*s, viewer, "Order", perm::read, order("O-2", "other@x", {})));
  EXPECT_FALSE(perm::may(*s, viewer, "Order", perm::delete_, order("O-2", "other@x", {})));
  EXPECT_TRUE(perm::may(*s, viewer, "Order", perm::delete_, order("O-3", "view@x", {})));
}

TEST(Permissions, UserPermissionsRestrictLinkedValuesOnTheDocumentAndItsChildren) {
  auto b = workshop();
  b.user_permission("adv@x", {"Customer", "C-1", ""});
  b.user_permission("adv@x", {"Customer", "C-2", "Order"});
  b.user_permission("adv@x", {"Customer", "C-9", "Invoice"});  // applies to invoices only
  b.user_permission("adv@x", {"Item", "I-1", ""});
  auto s = b.build();
  const auto adv = perm::user_of("adv@x", {"Advisor"});
  EXPECT_TRUE(perm::may(*s, adv, "Order", perm::read, order("O-1", "x", "C-1", {"I-1"})));
  EXPECT_TRUE(perm::may(*s, adv, "Order", perm::read, order("O-2", "x", "C-2")));
  EXPECT_FALSE(perm::may(*s, adv, "Order", perm::read, order("O-3", "x", "C-9"))) << "C-9 is allowed for invoices, not orders";
  EXPECT_FALSE(perm::may(*s, adv, "Order", perm::read, order("O-4", "x", "C-1", {"I-1", "I-2"}))) << "a child row's link counts";
  EXPECT_TRUE(perm::may(*s, adv, "Order", perm::read, order("O-5", "x", std::nullopt))) << "an empty link passes unless strict";
  // The restricted doctype itself is filtered by its own name.
  perm::DocView c;
  c.name = "C-3";
  c.parent.doctype = "Customer";
  EXPECT_FALSE(perm::may(*s, adv, "Customer", perm::read, c));
  c.name = "C-1";
  EXPECT_TRUE(perm::may(*s, adv, "Customer", perm::read, c));
  // Lists: the parent's links and the name.
  auto scope = perm::list_scope(*s, adv, "Order");
  ASSERT_EQ(scope.restrictions.size(), 1u);
  EXPECT_EQ(scope.restrictions[0].field, "customer");
  EXPECT_EQ(scope.restrictions[0].values, (std::vector<std::string>{"C-1", "C-2"}));
  auto cscope = perm::list_scope(*s, adv, "Customer");
  ASSERT_EQ(cscope.restrictions.size(), 1u);
  EXPECT_EQ(cscope.restrictions[0].field, "name");
  EXPECT_EQ(cscope.restrictions[0].values, (std::vector<std::string>{"C-1"})) << "C-2 applies to orders only";
  // Strict: an empty link no longer passes.
  b = workshop();
  b.user_permission("adv@x", {"Customer", "C-1", ""});
  b.strict(true);
  s = b.build();
  EXPECT_FALSE(perm::may(*s, adv, "Order", perm::read, order("O-5", "x", std::nullopt)));
  EXPECT_TRUE(perm::list_scope(*s, adv, "Order").strict);
}

TEST(Permissions, IgnoreUserPermissionsOnAFieldSkipsIt) {
  auto b = workshop();
  b.user_permission("adv@x", {"Customer", "C-1", ""});
  b.property("Order", "customer", "ignore_user_permissions", "1");
  auto s = b.build();
  const auto adv = perm::user_of("adv@x", {"Advisor"});
  EXPECT_TRUE(perm::may(*s, adv, "Order", perm::read, order("O-1", "x", "C-7")));
  EXPECT_TRUE(perm::list_scope(*s, adv, "Order").unrestricted());
}

TEST(Permissions, SharesOpenDocumentsWhateverElseSaysNo) {
  auto b = workshop();
  b.user_permission("adv@x", {"Customer", "C-1", ""});
  b.share("adv@x", false, {"Order", "O-9", perm::read});
  b.share("", true, {"Order", "O-8", perm::read | perm::write});
  b.share("tech@x", false, {"Order", "O-7", perm::read});
  auto s = b.build();
  const auto adv = perm::user_of("adv@x", {"Advisor"});
  EXPECT_TRUE(perm::may(*s, adv, "Order", perm::read, order("O-9", "x", "C-5"))) << "a share beats a user permission";
  EXPECT_FALSE(perm::may(*s, adv, "Order", perm::write, order("O-9", "x", "C-5"))) << "a read share gives no write";
  EXPECT_TRUE(perm::may(*s, adv, "Order", perm::write, order("O-8", "x", "C-5"))) << "shared with everyone";
  auto scope = perm::list_scope(*s, adv, "Order");
  EXPECT_EQ(scope.shared, (std::vector<std::string>{"O-8", "O-9"}));
  // No role at all: only what is shared, and nothing at all without a share.
  const auto tech = perm::user_of("tech@x", {"Technician"});
  EXPECT_TRUE(perm::may(*s, tech, "Order", perm::read, order("O-7", "x", "C-5")));
  EXPECT_FALSE(perm::may(*s, tech, "Order", perm::read, order("O-6", "x", "C-5")));
  auto tscope = perm::list_scope(*s, tech, "Order");
  EXPECT_TRUE(tscope.only_shared);
  EXPECT_EQ(tscope.shared, (std::vector<std::string>{"O-7", "O-8"}));
  const auto guest = perm::user_of("Guest", {});
  auto gscope = perm::list_scope(*s, guest, "Order");
  ASSERT_TRUE(gscope.refused) << "a share with everyone is not for Guest";
  EXPECT_EQ(gscope.refused->status, 403u);
  EXPECT_EQ(gscope.refused->message, "No permission for Order");
}

TEST(Permissions, FingerprintsAreEqualExactlyWhenWhatDecidesIsEqual) {
  auto b = workshop();
  b.user_permission("r1@x", {"Customer", "C-1", ""});
  b.user_permission("r2@x", {"Customer", "C-1", ""});
  b.user_permission("r3@x", {"Customer", "C-2", ""});
  b.user_permission("r4@x", {"Item", "I-1", ""});        // through the child table
  b.user_permission("r5@x", {"Technician", "T-1", ""});  // nothing of Order links to it
  b.share("s1@x", false, {"Order", "O-1", perm::read});
  auto s = b.build();
  auto fp = [&](const char* user, std::vector<std::string> roles) { return perm::fingerprint(*s, perm::user_of(user, roles), "Order"); };
  const auto plain = fp("a@x", {"Advisor"});
  EXPECT_EQ(plain.size(), 32u);
  EXPECT_EQ(plain, fp("b@x", {"Advisor"})) << "same roles, nothing else: one entry for both";
  EXPECT_EQ(plain, fp("c@x", {"Advisor", "Unrelated Role"}));
  EXPECT_EQ(plain, fp("r5@x", {"Advisor"})) << "a user permission nothing links to changes nothing";
  EXPECT_NE(plain, fp("m@x", {"Manager"}));
  EXPECT_NE(plain, fp("aud@x", {"Advisor", "Auditor"})) << "level 1 visible: other fields";
  EXPECT_EQ(fp("r1@x", {"Advisor"}), fp("r2@x", {"Advisor"}));
  EXPECT_NE(fp("r1@x", {"Advisor"}), fp("r3@x", {"Advisor"}));
  EXPECT_NE(plain, fp("r1@x", {"Advisor"}));
  EXPECT_NE(plain, fp("r4@x", {"Advisor"}));
  EXPECT_NE(plain, fp("s1@x", {"Advisor"}));
  EXPECT_NE(plain, perm::fingerprint(*s, perm::user_of("Administrator", {}), "Order"));
  // The doctype's rules are in: a Link field added (a user permission now filters more), or a
  // permission row changed, gives every user of the doctype a new fingerprint.
  auto b2 = workshop();
  b2.user_permission("r1@x", {"Customer", "C-1", ""});
  b2.field("Order", link_field("billing_customer", "Customer"));
  auto s2 = b2.build();
  EXPECT_NE(fp("r1@x", {"Advisor"}), perm::fingerprint(*s2, perm::user_of("r1@x", {"Advisor"}), "Order"));
  EXPECT_NE(plain, perm::fingerprint(*s2, perm::user_of("a@x", {"Advisor"}), "Order"));
  // Owner-only rights put the user's name in.
  perm::Snapshot::Builder ob;
  ob.perm_row("Order", row("Clerk", perm::read, 0, true), false);
  auto os = ob.build();
  EXPECT_NE(perm::fingerprint(*os, perm::user_of("k1@x", {"Clerk"}), "Order"), perm::fingerprint(*os, perm::user_of("k2@x", {"Clerk"}), "Order"));
}

TEST(Permissions, LoadedFromTheErpsOwnTables) {
  const auto server = pitstop::test::service_config().mariadb.primary;
  std::mt19937_64 rng(std::random_device{}());
  const std::string tag = "PermT" + std::to_string(rng() % 1000000000);
  const std::string order = tag + " Order", cust = tag + " Customer", user = tag + "@perm.test";
  auto q = [](const std::string& s) { return "'" + s + "'"; };
  const std::string cleanup =
      "DELETE FROM `tabDocPerm` WHERE `parent` IN (" + q(order) + "," + q(cust) + ");"
      "DELETE FROM `tabCustom DocPerm` WHERE `parent` IN (" + q(order) + "," + q(cust) + ");"
      "DELETE FROM `tabDocField` WHERE `parent` = " + q(order) + ";"
      "DELETE FROM `tabCustom Field` WHERE `dt` = " + q(order) + ";"
      "DELETE FROM `tabProperty Setter` WHERE `doc_type` = " + q(order) + ";"
      "DELETE FROM `tabUser Permission` WHERE `user` = " + q(user) + ";"
      "DELETE FROM `tabDocShare` WHERE `share_doctype` = " + q(order) + ";";
  struct Cleanup {
    const pitstop::config::MariaDb& server;
    std::string sql;
    ~Cleanup() { pitstop::test::mariadb_sql(server, sql); }
  } after{server, cleanup};
  pitstop::test::mariadb_sql(
      server,
      "INSERT INTO `tabDocPerm` (name, parent, parenttype, parentfield, idx, role, permlevel, `read`, `write`) VALUES "
      "(" + q(tag + "-p1") + "," + q(order) + ",'DocType','permissions',1,'Advisor',0,1,1),"
      "(" + q(tag + "-p2") + "," + q(order) + ",'DocType','permissions',2,'Manager',1,1,0),"
      "(" + q(tag + "-p3") + "," + q(cust) + ",'DocType','permissions',1,'Advisor',0,1,0),"
      // A row of another parenttype is not a permission of the doctype.
      "(" + q(tag + "-p4") + "," + q(order) + ",'Report','permissions',3,'Intruder',0,1,1);"
      "INSERT INTO `tabCustom DocPerm` (name, parent, idx, role, permlevel, `read`) VALUES "
      "(" + q(tag + "-c1") + "," + q(cust) + ",1,'Auditor',0,1);"
      "INSERT INTO `tabDocField` (name, parent, parenttype, parentfield, idx, fieldname, fieldtype, options, permlevel) VALUES "
      "(" + q(tag + "-f1") + "," + q(order) + ",'DocType','fields',1,'customer','Link'," + q(cust) + ",0),"
      "(" + q(tag + "-f2") + "," + q(order) + ",'DocType','fields',2,'notes','Small Text',NULL,0);"
      "INSERT INTO `tabCustom Field` (name, dt, fieldname, fieldtype, permlevel) VALUES "
      "(" + q(tag + "-cf") + "," + q(order) + ",'credit','Currency',1);"
      "INSERT INTO `tabProperty Setter` (name, doctype_or_field, doc_type, field_name, property, property_type, value) VALUES "
      "(" + q(tag + "-ps") + ",'DocField'," + q(order) + ",'notes','permlevel','Int','2');"
      "INSERT INTO `tabUser Permission` (name, user, allow, for_value, applicable_for) VALUES "
      "(" + q(tag + "-u1") + "," + q(user) + "," + q(cust) + ",'C-1',NULL);"
      "INSERT INTO `tabDocShare` (name, user, share_doctype, share_name, `read`, everyone) VALUES "
      "(" + q(tag + "-s1") + "," + q(user) + "," + q(order) + ",'O-9',1,0),"
      "(" + q(tag + "-s2") + ",NULL," + q(order) + ",'O-8',1,1);");

  asio::io_context ioc;
  pitstop::db::Pool pool(ioc, server, 2, 2000ms, 5000ms, 2000ms);
  std::shared_ptr<const perm::Snapshot> s;
  pitstop::test::run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await perm::load(pool);
    if (r) s = *r;
    else ADD_FAILURE() << r.error().message;
  }());
  ASSERT_TRUE(s);
  const perm::Doctype* d = s->doctype(order);
  ASSERT_TRUE(d);
  ASSERT_EQ(d->rows.size(), 2u) << "the Report row is not a DocType permission";
  EXPECT_FALSE(d->custom);
  ASSERT_TRUE(d->field("customer"));
  EXPECT_TRUE(d->field("customer")->is_link());
  ASSERT_TRUE(d->field("notes"));
  EXPECT_EQ(d->field("notes")->level, 2) << "the Property Setter overrides the DocField";
  ASSERT_TRUE(d->field("credit"));
  EXPECT_EQ(d->field("credit")->level, 1);
  const perm::Doctype* c = s->doctype(cust);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->custom);
  ASSERT_EQ(c->rows.size(), 1u);
  EXPECT_EQ(c->rows[0].role, "Auditor");
  const auto u = perm::user_of(user, {"Advisor"});
  EXPECT_TRUE(perm::may(*s, u, order, perm::read, [&] {
    perm::DocView v;
    v.name = "O-1";
    v.parent.doctype = order;
    v.parent.values = {{"customer", std::string_view("C-1")}};
    return v;
  }()));
  auto scope = perm::list_scope(*s, u, order);
  ASSERT_EQ(scope.restrictions.size(), 1u);
  EXPECT_EQ(scope.restrictions[0].values, std::vector<std::string>{"C-1"});
  EXPECT_EQ(scope.shared, (std::vector<std::string>{"O-8", "O-9"}));
}

TEST(Permissions, RefusalsBeforeAnyDocumentFollowWhatSomeDocumentCouldAllow) {
  perm::Snapshot::Builder b;
  b.perm_row("Order", row("Clerk", perm::read | perm::write | perm::delete_, 0, true), false);
  b.perm_row("Order", row("Viewer", perm::read), false);
  b.perm_row("Order", row("Maker", perm::create), false);
  b.share("shared@x", false, {"Order", "O-1", perm::read | perm::write});
  auto s = b.build();
  using A = perm::Action;
  const auto clerk = perm::user_of("c@x", {"Clerk"});
  const auto viewer = perm::user_of("v@x", {"Viewer"});
  const auto maker = perm::user_of("m@x", {"Maker"});
  const auto shared = perm::user_of("shared@x", {});
  for (A a : {A::read_document, A::read_list, A::update, A::remove}) EXPECT_FALSE(perm::refusal(*s, clerk, "Order", a)) << int(a);
  EXPECT_TRUE(perm::refusal(*s, clerk, "Order", A::insert)) << "create only through the Maker row";
  EXPECT_FALSE(perm::refusal(*s, maker, "Order", A::insert)) << "create alone does not need read";
  auto no_read = perm::refusal(*s, maker, "Order", A::read_document);
  ASSERT_TRUE(no_read);
  EXPECT_EQ(no_read->status, 403u);
  EXPECT_EQ(no_read->message, "No permission for Order");
  EXPECT_FALSE(perm::refusal(*s, shared, "Order", A::read_document)) << "a share opens some document";
  EXPECT_FALSE(perm::refusal(*s, shared, "Order", A::update)) << "a write share";
  EXPECT_TRUE(perm::refusal(*s, shared, "Order", A::remove));
  auto no_write = perm::refusal(*s, viewer, "Order", A::update);
  ASSERT_TRUE(no_write);
  EXPECT_EQ(no_write->message, "Insufficient Permission for Order (write)");
  // Revealing every record: the viewer may, the owner-only clerk and the shared user may not.
  EXPECT_FALSE(perm::refusal(*s, viewer, "Order", A::reveal));
  EXPECT_TRUE(perm::refusal(*s, clerk, "Order", A::reveal));
  EXPECT_TRUE(perm::refusal(*s, shared, "Order", A::reveal));
  EXPECT_FALSE(perm::refusal(*s, perm::user_of("Administrator", {}), "Order", A::reveal));
}
