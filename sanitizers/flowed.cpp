// RFC 3676 section 4: a line ending in a space (other than the signature separator "-- ") is
// soft-broken and joins the next line of the same quote depth. Linear in the input.
#include "sanitizers/flowed.hpp"

namespace mukai::sanitize {

std::string unflow_text(std::string_view text, bool delsp) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  bool joining = false;     // the previous line was soft-broken
  std::size_t prev_depth = 0;
  while (pos <= text.size()) {
    std::size_t eol = text.find('\n', pos);
    bool last = eol == std::string_view::npos;
    std::string_view line = text.substr(pos, last ? std::string_view::npos : eol - pos);
    if (last && line.empty()) break;
    std::size_t depth = 0;
    while (depth < line.size() && line[depth] == '>') ++depth;
    std::string_view content = line.substr(depth);
    if (!content.empty() && content[0] == ' ') content.remove_prefix(1);  // space-stuffing
    bool soft = !content.empty() && content.back() == ' ' && content != "-- ";
    if (joining && depth != prev_depth) out += '\n';  // depth change ends a paragraph (RFC 3676 4.5)
    if (!joining || depth != prev_depth) {
      for (std::size_t i = 0; i < depth; ++i) out += '>';
      if (depth > 0) out += ' ';
    }
    if (soft && delsp) content.remove_suffix(1);
    out.append(content.data(), content.size());
    if (!soft) out += '\n';
    joining = soft;
    prev_depth = depth;
    if (last) break;
    pos = eol + 1;
  }
  if (joining) out += '\n';
  return out;
}

}  // namespace mukai::sanitize
