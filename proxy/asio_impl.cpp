// Separate compilation of Asio and Beast: their implementation is compiled here once, so that the
// rest of the tree includes only declarations (see BOOST_*_SEPARATE_COMPILATION in CMakeLists.txt).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
