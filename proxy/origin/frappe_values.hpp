#pragma once
// Text, numbers, dates and times converted the way Frappe (Python) converts them. Internal to the
// origin: the list query reads filter values with these, and the write handler checks values it
// stores against the same rules.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pitstop::origin::frappe {

// ---------------------------------------------------------------------------------------------
// Text helpers

inline bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim_ascii(std::string_view s);

// Python's str.strip(): Frappe strips every `in` value with it.
std::string_view py_strip(std::string_view s);

std::string lower_ascii(std::string_view s);

bool iequals(std::string_view a, std::string_view b);  // b is lower-case

// Identifiers always come from TableMeta; doubling backticks keeps even odd names inert.
std::string quote_ident(std::string_view name);

// ---------------------------------------------------------------------------------------------
// Numbers, dates and times as Frappe converts them

std::string py_float_repr(double d);

// frappe.utils.flt for a string: commas removed, then float(); anything unparsable is 0.0.
// nullopt for nan / inf.
std::optional<double> flt_text(std::string_view s);

struct DateTime {
  int year = 0, month = 0, day = 0;
  int hour = 0, minute = 0, second = 0, micro = 0;
  bool has_time = false;
};

bool leap(int y);
int days_in(int y, int m);

// Reads min_digits..max_digits decimal digits at s[i], advancing i.
bool read_int(std::string_view s, std::size_t& i, std::size_t min_digits, std::size_t max_digits, int& out);

// H:MM[:SS[.ffffff]] from position i to the end of s.
bool read_time(std::string_view s, std::size_t i, DateTime& dt);

// The date forms Frappe's getdate/get_datetime read the same whatever the system date format:
// YYYY-M-D, optionally followed by ' ' or 'T' and a time (read_time), ASCII blanks around it
// ignored. 0001-01-01 is refused: getdate() reads it as None, which fails later in Frappe.
std::optional<DateTime> parse_datetime(std::string_view text);

std::string format_date(const DateTime& d);      // YYYY-MM-DD
std::string format_datetime(const DateTime& d);  // YYYY-MM-DD HH:MM:SS.ffffff
std::optional<std::string> format_time(std::string_view text);  // HH:MM:SS.ffffff

}  // namespace pitstop::origin::frappe
