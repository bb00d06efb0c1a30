#pragma once
// The origins make_origin chooses from (factory.cpp), each defined beside the code it runs.
#include <memory>

#include "proxy/origin/origin.hpp"

namespace pitstop::origin {

// A named query (named_query.cpp): reads and checks the rule's query file.
std::shared_ptr<const Origin> named_query_origin(const rules::Rule& rule, const rules::RuleSet& rules);
// Frappe's /api/resource/<DocType>/<name> and /api/resource/<DocType> (resource.cpp).
std::shared_ptr<const Origin> document_origin();
std::shared_ptr<const Origin> list_origin();
// The ERP itself, asked with the client's own credentials (http_origin.cpp).
std::shared_ptr<const Origin> http_origin();

}  // namespace pitstop::origin
