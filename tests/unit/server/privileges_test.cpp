// Privilege-drop helpers that can be checked without becoming another user: the capability lines
// of /proc/<pid>/status and the user lookup. The drop itself is exercised through the binary in
// tests/unit/cli/serve_privileges_test.cpp (it cannot be undone inside a test process).
#include "server/privileges.hpp"

#include <doctest/doctest.h>

using namespace mukai::server;

TEST_CASE("status_capability reads the hex masks of /proc/<pid>/status") {
  const std::string status =
      "Name:\tmukai\nUid:\t65534\t65534\t65534\t65534\nCapInh:\t0000000000000000\n"
      "CapPrm:\t0000000000000400\nCapEff:\t0000000000000000\nCapAmb:\t000001ffffffffff\n";
  CHECK(status_capability(status, "CapEff") == std::uint64_t{0});
  CHECK(status_capability(status, "CapPrm") == std::uint64_t{0x400});  // CAP_NET_BIND_SERVICE
  CHECK(status_capability(status, "CapAmb") == std::uint64_t{0x1ffffffffff});
  CHECK_FALSE(status_capability(status, "CapBnd").has_value());
  CHECK_FALSE(status_capability("CapEff:\tzz\n", "CapEff").has_value());
  CHECK_FALSE(status_capability("CapEffX:\t0\n", "CapEff").has_value());
}

TEST_CASE("lookup_service_user: an existing account, an unknown one, never uid 0") {
  std::string why;
  auto nobody = lookup_service_user("nobody", why);
  REQUIRE(nobody);
  CHECK(nobody->uid != 0);
  CHECK(nobody->name == "nobody");
  CHECK_FALSE(lookup_service_user("mukai-no-such-user", why));
  CHECK(why.find("no such user") != std::string::npos);
  CHECK_FALSE(lookup_service_user("root", why));
  CHECK(why.find("uid 0") != std::string::npos);
}
