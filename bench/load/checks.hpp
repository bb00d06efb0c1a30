// Reading the answers a stale-read check looks at. Kept apart from the client so that only this
// file pays for simdjson; the parser is per thread (the calls are synchronous).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pitstop::load::checks {

// POST /api/resource/<DocType> → {"data": {"name": …}}
std::optional<std::string> created_name(std::string_view body);

// GET /api/resource/Service Order/<name> → {"data": {"vehicle": …, "status": …}}
struct OrderDoc {
  std::string vehicle, status;
};
std::optional<OrderDoc> order_doc(std::string_view body);

// GET get_vehicle_history → {"message": {"orders": [{"name", "status", …}]}}
struct Listed {
  bool parsed = false;
  bool found = false;
  std::string status;
  std::size_t count = 0;  // orders listed
};
Listed find_order(std::string_view body, std::string_view name);

// GET get_parts_availability → {"message": {"stock": [{"warehouse", "actual_qty", …}]}}
struct Stock {
  bool parsed = false;
  bool found = false;
  double qty = 0;
};
Stock find_stock(std::string_view body, std::string_view warehouse);

}  // namespace pitstop::load::checks
