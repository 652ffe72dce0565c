// See smtp_data_encoder.hpp.
#include "server/smtp_data_encoder.hpp"

namespace mukai::server {

void smtp_data_encoder::encode(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 16 + 2);
  std::size_t i = 0;
  while (i < in.size()) {
    const char c = in[i];
    if (pending_cr_) {
      pending_cr_ = false;
      out += "\r\n";
      line_start_ = true;
      if (c == '\n') {
        ++i;
        continue;
      }
      // A bare CR: already turned into CRLF above; the byte after it starts a new line.
    }
    if (c == '\r') {
      pending_cr_ = true;
      ++i;
      continue;
    }
    if (c == '\n') {  // a bare LF
      out += "\r\n";
      line_start_ = true;
      ++i;
      continue;
    }
    if (line_start_ && c == '.' && mode_ == mode::data) out += '.';
    // Copy the rest of the line up to the next CR or LF in one go.
    std::size_t end = i;
    while (end < in.size() && in[end] != '\r' && in[end] != '\n') ++end;
    out.append(in.data() + i, end - i);
    line_start_ = false;
    i = end;
  }
}

void smtp_data_encoder::finish(std::string& out) {
  if (pending_cr_) {
    pending_cr_ = false;
    out += "\r\n";
    line_start_ = true;
  }
  if (!line_start_) {
    out += "\r\n";
    line_start_ = true;
  }
  if (mode_ == mode::data) out += ".\r\n";
}

std::uint64_t smtp_data_encoder::normalised_size(std::string_view message) noexcept {
  std::uint64_t size = 0;
  for (std::size_t i = 0; i < message.size(); ++i) {
    const char c = message[i];
    if (c == '\r') {
      size += 2;
      if (i + 1 < message.size() && message[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      size += 2;
    } else {
      ++size;
    }
  }
  if (!message.empty() && message.back() != '\n' && message.back() != '\r') size += 2;
  return size;
}

}  // namespace mukai::server
