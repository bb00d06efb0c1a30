// The Origin interface's shared steps and the factory that builds a rule's origin.
#include "proxy/origin/kinds.hpp"

namespace pitstop::origin {

namespace asio = boost::asio;
using boost::system::result;

result<std::string, http::Problem> Origin::key_extra(const rules::Values&) const {
  return result<std::string, http::Problem>(boost::system::in_place_value);
}

asio::awaitable<result<Answer, http::Problem>> Origin::fetch(const rules::Rule& rule, const Ask& ask, Context& ctx) const {
  auto got = co_await answer(rule, ask, ctx);
  // An error answer depends on nothing a write could change: it is never kept.
  if (got && got->status == 200) got->tags = rules::render_tags(rule.tags, ask.captures, ask.params, got->body);
  co_return got;
}

std::shared_ptr<const Origin> make_origin(const rules::Rule& rule, const rules::RuleSet& rules) {
  switch (rule.kind) {
    case rules::OriginKind::sql: return named_query_origin(rule, rules);
    case rules::OriginKind::resource_doc: return document_origin();
    case rules::OriginKind::resource_list: return list_origin();
    case rules::OriginKind::http: return http_origin();
    case rules::OriginKind::resource_insert:
    case rules::OriginKind::resource_update:
    case rules::OriginKind::resource_delete: break;
  }
  return nullptr;  // writes are applied by the write path
}

}  // namespace pitstop::origin
