// Asio and its SSL support, compiled once for the whole program
// (BOOST_ASIO_SEPARATE_COMPILATION): every other file includes only headers.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
