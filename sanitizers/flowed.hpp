// format=flowed (RFC 3676) bodies back to paragraphs: soft line breaks joined, space-stuffing
// removed, quote depth kept. Input and output are UTF-8 with LF line ends.
#pragma once

#include <string>
#include <string_view>

namespace mukai::sanitize {

std::string unflow_text(std::string_view text, bool delsp);

}  // namespace mukai::sanitize
