// The cache key's text of a list request (canonical_list_request): parameters re-serialised so
// that spellings Frappe reads alike give one key.
#include <simdjson.h>

#include "proxy/json/writer.hpp"
#include "proxy/origin/list_internal.hpp"

namespace pitstop::origin {
namespace list {
namespace {

namespace dom = simdjson::dom;

// ---------------------------------------------------------------------------------------------
// Canonical JSON

// Canonical re-serialisation recurses; nothing Frappe accepts nests deeper than 3.
constexpr std::size_t kMaxJsonDepth = 64;

std::optional<ListError> write_canonical(json::Writer& w, dom::element e, std::string_view parameter,
                                         std::size_t depth) {
  if (depth > kMaxJsonDepth) return fail(parameter, std::string(parameter) + " is nested too deeply");
  switch (e.type()) {
    case dom::element_type::NULL_VALUE:
      w.null();
      break;
    case dom::element_type::BOOL:
      w.value(e.get_bool().value_unsafe());
      break;
    case dom::element_type::INT64:
      w.value(e.get_int64().value_unsafe());
      break;
    case dom::element_type::UINT64:
      w.value(e.get_uint64().value_unsafe());
      break;
    // Python keeps 1.0 and 1 apart (str() differs, and Frappe uses str() for `in`), so do we.
    case dom::element_type::DOUBLE:
      w.value(e.get_double().value_unsafe());
      break;
    case dom::element_type::STRING:
      w.value(e.get_string().value_unsafe());
      break;
    case dom::element_type::ARRAY: {
      // A named copy: ranging over value_unsafe() would keep a reference into a temporary.
      dom::array a = e.get_array().value_unsafe();
      w.begin_array();
      for (dom::element child : a)
        if (auto err = write_canonical(w, child, parameter, depth + 1)) return err;
      w.end_array();
      break;
    }
    case dom::element_type::OBJECT: {
      // Sorted keys; a repeated key keeps its last value, as in a Python dict.
      std::vector<std::pair<std::string_view, dom::element>> members;
      dom::object obj = e.get_object().value_unsafe();
      for (dom::key_value_pair kv : obj) members.emplace_back(kv.key, kv.value);
      std::stable_sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      w.begin_object();
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i + 1 < members.size() && members[i + 1].first == members[i].first) continue;
        w.key(members[i].first);
        if (auto err = write_canonical(w, members[i].second, parameter, depth + 1)) return err;
      }
      w.end_object();
      break;
    }
  }
  return std::nullopt;
}

// The canonical JSON of a parameter, or nullopt when it is absent or falsy (which Frappe treats
// as absent).
Result<std::optional<std::string>> canonical_json(std::string_view parameter, const std::optional<std::string>& raw) {
  if (!raw || raw->empty()) return std::optional<std::string>();
  auto root = parse_json(parameter, *raw);
  if (!root) return root.error();
  if (json_falsy(*root)) return std::optional<std::string>();
  std::string out;
  json::Writer w(out);
  if (auto err = write_canonical(w, *root, parameter, 0)) return *err;
  return std::optional<std::string>(std::move(out));
}

// order_by / group_by text: items trimmed and joined with ", ", whitespace runs outside
// backticks collapsed, a trailing asc / desc lower-cased.
std::string canonical_clause(std::string_view text, bool directions) {
  std::string_view trimmed = trim_ascii(text);
  if (trimmed.empty()) return {};
  std::vector<std::string> items;
  for (auto raw_item : split_items(trimmed)) {
    std::string item;
    bool in_tick = false;
    bool pending_space = false;
    for (char c : trim_ascii(raw_item)) {
      if (c == '`') in_tick = !in_tick;
      if (!in_tick && is_ascii_space(c)) {
        pending_space = true;
        continue;
      }
      if (pending_space) item.push_back(' ');
      pending_space = false;
      item.push_back(c);
    }
    if (directions) {
      auto [expr, direction] = split_direction(item);
      if (!direction.empty()) item = std::string(expr) + " " + lower_ascii(direction);
    }
    items.push_back(std::move(item));
  }
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += items[i];
  }
  return out;
}

}  // namespace
}  // namespace list

boost::system::result<std::string, ListError> canonical_list_request(const ListRequest& request) {
  using namespace list;
  auto fields = canonical_json("fields", request.fields);
  if (!fields) return fields.error();
  auto filters = canonical_json("filters", request.filters);
  if (!filters) return filters.error();
  auto or_filters = canonical_json("or_filters", request.or_filters);
  if (!or_filters) return or_filters.error();
  auto start = limit_start(request);
  if (!start) return start.error();
  auto page = page_length(request);
  if (!page) return page.error();

  std::string out;
  json::Writer w(out);
  w.begin_object();
  w.member("as_dict", std::int64_t{as_dict_value(request) ? 1 : 0});
  // No fields (or falsy ones) and ["name"] select the same thing.
  w.key("fields").raw(*fields ? **fields : std::string_view(R"(["name"])"));
  if (*filters) w.key("filters").raw(**filters);
  if (request.group_by) {
    std::string g = canonical_clause(*request.group_by, false);
    if (!g.empty()) w.member("group_by", g);
  }
  w.member("limit", static_cast<std::uint64_t>(page->value));
  // Without a page length Frappe ignores limit_start.
  w.member("limit_start", static_cast<std::uint64_t>(page->value == 0 ? 0 : *start));
  if (*or_filters) w.key("or_filters").raw(**or_filters);
  // An absent order_by (the doctype's default order) and an empty one (no order) differ.
  if (request.order_by) w.member("order_by", canonical_clause(*request.order_by, true));
  w.end_object();
  return ok(std::move(out));
}

}  // namespace pitstop::origin
