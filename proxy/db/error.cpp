#include <boost/throw_exception.hpp>
#include <stdexcept>

#include "proxy/db/db.hpp"

namespace pitstop::db {
namespace {
class Category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "mariadb"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::timeout: return "MariaDB operation timed out";
      case errc::connection_lost: return "MariaDB connection lost";
      case errc::connect_failed: return "cannot connect to MariaDB";
      case errc::pool_timeout: return "no MariaDB connection became free in time";
      case errc::closed: return "MariaDB pool closed";
      case errc::server: return "MariaDB refused the statement";
      case errc::protocol: return "MariaDB client error";
    }
    return "MariaDB error";
  }
};
}  // namespace

const boost::system::error_category& category() {
  static const Category c;
  return c;
}

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
  boost::throw_exception(std::runtime_error(e.code.message() + ": " + e.message), loc);
}

}  // namespace pitstop::db
