// Boost.URL (part of Boost 1.81) compiled into mukai_server from its headers: Debian ships the
// compiled library as a separate package (libboost-url1.81-dev), this keeps the dependency list as
// it is. Used by the web console to parse request targets and form bodies (admin_routes.cpp).
#include <boost/url/src.hpp>
