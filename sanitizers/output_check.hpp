// The GMime-free part of the output contract, for callers outside sanitizers/ (the relay checks
// a worker's output with it): the wire-form invariant, and the fixed-text hold notice.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "config/policy.hpp"

namespace mukai::sanitize {

// A hold notice from fixed text only, for when nothing else can be built.
std::string minimal_hold_message(const config::policy& pol, const std::string& quarantine_id);

// Every line CRLF-terminated and at most 998 octets, no NUL, no bare CR/LF, 7-bit headers.
bool meets_output_invariant(std::string_view message);

}  // namespace mukai::sanitize
