#include "bench/load/checks.hpp"

#include <simdjson.h>

#include <cstdlib>

namespace pitstop::load::checks {

namespace dom = simdjson::dom;

namespace {

// One per thread: each thread runs one event loop and these calls complete before returning.
dom::parser& parser() {
  thread_local dom::parser p;
  return p;
}

bool parse(std::string_view body, dom::element& root) {
  return !parser().parse(body.data(), body.size(), true).get(root);
}

std::optional<std::string> string_at(dom::element e, std::string_view key) {
  std::string_view v;
  if (e[key].get_string().get(v)) return std::nullopt;
  return std::string(v);
}

}  // namespace

std::optional<std::string> created_name(std::string_view body) {
  dom::element root, data;
  if (!parse(body, root) || root["data"].get(data)) return std::nullopt;
  return string_at(data, "name");
}

std::optional<OrderDoc> order_doc(std::string_view body) {
  dom::element root, data;
  if (!parse(body, root) || root["data"].get(data)) return std::nullopt;
  auto vehicle = string_at(data, "vehicle");
  auto status = string_at(data, "status");
  if (!vehicle) return std::nullopt;
  return OrderDoc{std::move(*vehicle), status.value_or("")};
}

Listed find_order(std::string_view body, std::string_view name) {
  Listed out;
  dom::element root;
  dom::array orders;
  if (!parse(body, root) || root["message"]["orders"].get_array().get(orders)) return out;
  out.parsed = true;
  for (dom::element o : orders) {
    ++out.count;
    std::string_view n;
    if (out.found || o["name"].get_string().get(n) || n != name) continue;
    out.found = true;
    std::string_view s;
    if (!o["status"].get_string().get(s)) out.status = std::string(s);
  }
  return out;
}

Stock find_stock(std::string_view body, std::string_view warehouse) {
  Stock out;
  dom::element root;
  dom::array stock;
  if (!parse(body, root) || root["message"]["stock"].get_array().get(stock)) return out;
  out.parsed = true;
  for (dom::element b : stock) {
    std::string_view w;
    if (b["warehouse"].get_string().get(w) || w != warehouse) continue;
    double q = 0;
    dom::element qe;
    if (b["actual_qty"].get(qe)) continue;
    // Compared as numbers: 17, 17.0 and "17.000" are the same quantity.
    if (qe.get_double().get(q)) {
      std::string_view t;
      if (qe.get_string().get(t)) continue;
      q = std::strtod(std::string(t).c_str(), nullptr);
    }
    out.found = true;
    out.qty = q;
    break;
  }
  return out;
}

}  // namespace pitstop::load::checks
