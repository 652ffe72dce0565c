// URLs in plain text. Mail programs turn "https://..." and "www..." in a text body into
// clickable links, so the link policy that applies to HTML anchors applies to text as well.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "config/policy.hpp"

namespace mukai::sanitize {

struct text_link_counts {
  int defanged = 0;
  int removed = 0;
};

// Applies pol.http_links to every http(s)/ftp URL and "www." host in `text` (UTF-8).
// Already defanged text ("hxxps://a[.]b") is left as it is, so the function is idempotent.
std::string apply_link_policy_to_text(std::string_view text, const config::policy& pol, text_link_counts& counts);

// The same in place. Why: most text bodies have no URL and are then left as they are instead of
// being copied.
void apply_link_policy_in_place(std::string& text, const config::policy& pol, text_link_counts& counts);

}  // namespace mukai::sanitize
