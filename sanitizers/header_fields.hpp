// Reading the allow-listed header fields of a message and the MIME facts of a part, with
// RFC 2047 decoded word by word by our own decoder (GMime 3.2.13 bug #133) before GMime
// parses the structure (addresses, parameters).
// Threading: GMime objects of the calling thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sanitizers/gobject_ptr.hpp"

namespace mukai::sanitize {

struct header_fields {
  gobject_ptr<InternetAddressList> from, to, cc, reply_to;  // null or empty when absent/unusable
  std::string from_text;      // decoded, for display ("Name <addr>")
  std::string subject;        // decoded UTF-8, one line
  date_time_ptr date;         // null when absent or unparseable
  std::string date_text;      // decoded, for display
  std::string message_id;     // without angle brackets; "" when absent or invalid
  std::vector<std::string> in_reply_to, references;  // validated ids without brackets
  std::vector<std::string> warnings;
};

header_fields read_header_fields(GMimeMessage* message, GMimeParserOptions* options, std::string_view charset_hint);

struct part_info {
  std::string mime_type;  // lower-case "type/subtype"
  std::string charset;    // Content-Type charset parameter as sent ("" if none)
  std::string filename;   // Content-Disposition filename, else Content-Type name; decoded UTF-8
  std::string name_param; // Content-Type name when it differs from filename, else ""
  std::string smime_type;
  bool is_attachment = false;
  bool format_flowed = false;
  bool delsp = false;
  bool transfer_encoding_known = true;
};

part_info read_part_info(GMimeObject* part, GMimeParserOptions* options, std::string_view charset_hint);

// The charset label of the first text part (a hint for unlabeled 8-bit header text).
std::string first_text_charset(GMimeObject* top);

// A msg-id we are willing to write back: printable ASCII, no brackets or spaces, <= 250 octets.
bool is_safe_message_id(std::string_view id);

}  // namespace mukai::sanitize
