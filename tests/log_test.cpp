#include <gtest/gtest.h>

#include "proxy/log/log.hpp"

using namespace pitstop;

// One formatter serves log lines, invalidation events and the SQL datetimes Frappe compares
// (`modified`): each form to the digit, including the rounding down of the fraction.
TEST(UtcText, TheThreeFormsToTheDigit) {
  using namespace std::chrono;
  const system_clock::time_point tp = system_clock::time_point{} + seconds(1795939335) + microseconds(123987);
  EXPECT_EQ(log::utc_text(tp, 'T', 6, true), "2026-11-29T08:02:15.123987Z");
  EXPECT_EQ(log::utc_text(tp, 'T', 3, true), "2026-11-29T08:02:15.123Z");
  EXPECT_EQ(log::utc_text(tp, ' ', 6, false), "2026-11-29 08:02:15.123987");
  EXPECT_EQ(log::utc_text(system_clock::time_point{} + seconds(1795939335), ' ', 6, false), "2026-11-29 08:02:15.000000");
}
