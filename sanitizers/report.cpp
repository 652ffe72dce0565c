// String forms of the report enums (the JSON and header vocabulary).
#include "sanitizers/report.hpp"

namespace mukai::sanitize {

const char* to_string(verdict v) noexcept {
  switch (v) {
    case verdict::clean: return "clean";
    case verdict::sanitized: return "sanitized";
    case verdict::held: return "held";
  }
  return "held";
}

const char* to_string(part_action a) noexcept {
  switch (a) {
    case part_action::kept_as_text: return "kept-as-text";
    case part_action::converted: return "converted";
    case part_action::quarantined: return "quarantined";
    case part_action::discarded: return "discarded";
  }
  return "quarantined";
}

}  // namespace mukai::sanitize
