#include "proxy/redis/reply.hpp"

namespace pitstop::redis {
namespace {
class Category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "redis"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::timeout: return "redis command timed out";
      case errc::not_connected: return "redis is not connected";
      case errc::connection_lost: return "redis connection lost";
      case errc::rejected: return "redis command rejected by the client library";
      case errc::stopped: return "redis client stopped";
    }
    return "redis error";
  }
};
}  // namespace

const boost::system::error_category& category() {
  static const Category c;
  return c;
}

}  // namespace pitstop::redis
