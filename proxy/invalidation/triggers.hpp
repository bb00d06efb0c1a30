#pragma once
// sql/triggers.sql, generated from the rules' doctypes and row tags.
#include <string>

#include "proxy/rules/rules.hpp"

namespace pitstop::invalidation {

std::string trigger_sql(const rules::RuleSet& rules);

}  // namespace pitstop::invalidation
