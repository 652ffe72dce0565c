#include <doctest/doctest.h>
#include "sanitizers/report.hpp"
using namespace mukai::sanitize;
TEST_CASE("report enums have their JSON names") {
  CHECK(std::string(to_string(verdict::held)) == "held");
  CHECK(std::string(to_string(part_action::kept_as_text)) == "kept-as-text");
}
