#pragma once
// Checks on a request head that decide how its body is framed and who it is for; refused heads
// are answered and the connection closed. Internal to proxy/http (Beast types).
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "proxy/http/problem.hpp"

namespace pitstop::http {

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;

// True when a field line of the raw head (request line and fields) is an obs-fold continuation.
bool has_obs_fold(std::string_view head);

// Target form, Host and Transfer-Encoding. An absolute-form target is rewritten in place to the
// origin-form it carries, its authority becoming the Host.
std::optional<Problem> check_head(BeastRequest& m);

}  // namespace pitstop::http
