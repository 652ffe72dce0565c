// An independent check of the engine's output invariant (issue: "tested on every message of
// every corpus"). It re-parses the output with GMime and never calls engine code, so a bug in
// the engine cannot hide itself.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::testing {

struct invariant_check {
  std::vector<std::string> failures;
  std::string body;  // decoded body, UTF-8
  bool ok() const { return failures.empty(); }
};

// report: the engine's JSON report for the same message (verdict, parts).
// removed_bytes: decoded bytes of removed non-text parts; none may appear in the output.
invariant_check check_output(std::string_view message, const boost::json::value& report,
                             const std::vector<std::string>& removed_bytes);

}  // namespace mukai::testing
