#pragma once
// Strict base64 (RFC 4648): padding required, no whitespace, no foreign characters.
#include <optional>
#include <string>
#include <string_view>

namespace pitstop::auth {

enum class Base64 { standard, url };

std::optional<std::string> base64_decode(std::string_view in, Base64 alphabet);
std::string base64_encode(std::string_view in, Base64 alphabet);

}  // namespace pitstop::auth
