#include "proxy/invalidation/erp_events.hpp"

#include <simdjson.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "proxy/log/log.hpp"

namespace pitstop::invalidation {

namespace asio = boost::asio;

namespace {
// A longer message is no document event (Frappe's are a few hundred bytes).
constexpr std::size_t kMaxPayload = 64 * 1024;
}  // namespace

std::vector<std::string> erp_event_tags(std::string_view payload) {
  if (payload.size() > kMaxPayload) return {};
  simdjson::dom::parser parser;
  simdjson::dom::object message;
  if (parser.parse(payload.data(), payload.size()).get(message)) return {};
  std::string_view event, room;
  if (message["event"].get(event) || message["room"].get(room)) return {};
  // doc:<DocType>/<name> and doctype:<DocType>, as the rooms name them; the name may hold '/'.
  if (event == "doc_update" && room.starts_with("doc:")) {
    const auto rest = room.substr(4);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) return {};
    return {std::string(room)};
  }
  if (event == "list_update" && room.starts_with("doctype:") && room.size() > 8) return {std::string(room)};
  return {};
}

ErpEvents::ErpEvents(asio::io_context& ioc, redis::Client& subscriber, Invalidator& invalidator, std::string site,
                     std::function<void()> flush_l1)
    : ioc_(ioc), subscriber_(subscriber), invalidator_(invalidator), site_(std::move(site)), flush_l1_(std::move(flush_l1)) {}

void ErpEvents::start() {
  running_ = std::make_shared<bool>(true);
  subscriber_.subscribe(
      {"events"}, [this](std::string_view, std::string_view payload) { on_message(payload); },
      [this](bool subscribed) {
        if (!subscribed) {
          if (was_subscribed_ && !lost_ && *running_) log::warn("the ERP's events are not heard: L1 is emptied when they are back");
          lost_ = was_subscribed_;
          return;
        }
        // The ERP may have changed anything while nobody listened.
        if (lost_) {
          ++stats_.resubscribed;
          flush_l1_();
          log::info("the ERP's events are heard again; L1 emptied");
        }
        was_subscribed_ = true;
        lost_ = false;
      });
}

void ErpEvents::stop() {
  if (running_) *running_ = false;
}

void ErpEvents::on_message(std::string_view payload) {
  ++stats_.messages;
  auto tags = erp_event_tags(payload);
  if (tags.empty()) {
    ++stats_.ignored;
    return;
  }
  ++stats_.invalidations;
  Event e{"erp:" + std::to_string(++next_id_), std::move(tags), "erp", utc_now(), site_, {}, true};
  asio::co_spawn(
      ioc_,
      [this, e = std::move(e), running = running_]() mutable -> asio::awaitable<void> {
        if (!*running) co_return;
        auto delivered = co_await invalidator_.deliver(std::move(e));
        // Not delivered (Redis down): the outbox row the ERP's triggers wrote carries it later.
        if (delivered.ec) log::warn("an invalidation from the ERP's events was not delivered (", delivered.ec.message(), ")");
      },
      asio::detached);
}

}  // namespace pitstop::invalidation
