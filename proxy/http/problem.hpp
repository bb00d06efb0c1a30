#pragma once
// Why a request cannot be answered as asked, in the terms of Frappe's error answers: the status,
// the exception class a Frappe client switches on (`exc_type`) and the message it shows. Every
// layer (framing, routing, credentials, the origins) says no with this one type, and
// http::error_response turns it into Frappe's error body.
#include <string>

#include <boost/assert/source_location.hpp>

namespace pitstop::http {

struct Problem {
  unsigned status = 500;
  std::string exc_type = "Exception";
  std::string message;
  // A failure of something behind pitstop (the database or the upstream timed out or cannot be
  // reached) rather than of the request: an expired answer may stand in (stale-if-error).
  bool transient = false;
};

// For boost::system::result<T, Problem>::value() (found by argument-dependent lookup).
[[noreturn]] void throw_exception_from_error(const Problem& p, const boost::source_location& loc);

}  // namespace pitstop::http
