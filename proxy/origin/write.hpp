#pragma once
// Writes through the sql origin (POST, PUT, DELETE of /api/resource): validated against the
// table's columns and the rules' doctype (mandatory fields, links, naming), applied in one
// transaction together with an outbox row that carries the tags the write affects.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/origin/origin.hpp"

namespace pitstop::origin {

struct WriteOutcome {
  unsigned status = 200;
  std::string body;               // {"data": {the stored document}} or {"data": "ok"}
  std::string name;               // the document's name (given, or made by the naming rule)
  std::vector<std::string> tags;  // of the old and the new rows, children included
  std::uint64_t outbox_id = 0;    // the committed outbox row to mark done once invalidated
};

// `op` is resource_insert, resource_update or resource_delete; `name` is empty for inserts.
// `roles` decide submit and cancel (docstatus 0 → 1 → 2), which only the stored row can tell apart.
boost::asio::awaitable<boost::system::result<WriteOutcome, http::Problem>> write_doc(db::Pool& pool, const Catalog& catalog,
                                                                               const rules::RuleSet& rules,
                                                                               const rules::Doctype& doctype, rules::OriginKind op,
                                                                               std::string name, std::string_view body,
                                                                               const std::string& user, const std::vector<std::string>& roles,
                                                                               const std::string& site, const Viewer* viewer = nullptr);

std::string_view write_kind_name(rules::OriginKind op);

}  // namespace pitstop::origin
