#pragma once
// A Redis reply, copied out of hiredis (its replies die when the callback returns).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

namespace pitstop::redis {

struct Reply {
  enum class Type { nil, integer, string, status, error, array };
  Type type = Type::nil;
  std::int64_t integer = 0;
  std::string str;  // string, status and error payloads
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::error; }
  bool is_nil() const { return type == Type::nil; }
  bool is_string() const { return type == Type::string || type == Type::status; }
};

// Transport-level failures. A Redis error reply (WRONGTYPE, NOSCRIPT…) is not one of these: it
// arrives as a Reply of type error.
enum class errc {
  timeout = 1,      // no reply within the command deadline; the connection was dropped
  not_connected,    // no connection and none could be made in time
  connection_lost,  // the connection broke with this command in flight
  rejected,         // hiredis refused the command (context in error)
  stopped,          // the client was stopped
};

const boost::system::error_category& category();
inline boost::system::error_code make_error_code(errc e) {
  return {static_cast<int>(e), category()};
}

}  // namespace pitstop::redis

template <>
struct boost::system::is_error_code_enum<pitstop::redis::errc> : std::true_type {};
