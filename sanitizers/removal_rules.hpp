// Removal rules: what happens to a removed part (quarantine or discard), decided from its
// content facts, its size and the policy's ordered rules.
// Invariants: pure and total. The first rule whose every non-empty criterion matches decides;
// no match means the policy's default action. Empty lists match anything, so a rule with no
// criteria is a catch-all.
// Threading: no state; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config/policy.hpp"
#include "sanitizers/content_inspect.hpp"

namespace mukai::sanitize {

struct removal_decision {
  config::removed_action action = config::removed_action::quarantine;
  std::string reason;  // "rule:<name>" ("rule:#<1-based index>" for an unnamed rule) or "default"
};

// Criteria: detected_types globs on facts.detected_type; extensions globs on facts.extension
// (a leading dot in the pattern is ignored); every listed flag must be set; size within
// [min_size, max_size] inclusive.
[[nodiscard]] removal_decision decide_removal(const content_facts& facts, std::uint64_t size,
                                              const config::policy& pol);

// Shell-style match of the whole text: '*' any run (also empty), '?' one UTF-8 character,
// every other character literal, ASCII case-insensitive. O(pattern * text) worst case.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view text) noexcept;

}  // namespace mukai::sanitize
