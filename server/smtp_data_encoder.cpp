// See smtp_data_encoder.hpp.
#include "server/smtp_data_encoder.hpp"

#include "server/line_scan.hpp"

namespace mukai::server {

// Copies runs of the input: a run goes on across proper CRLF line ends and is only cut where
// bytes must be added (a stuffed dot, the LF of a bare CR or LF), so ordinary text costs one
// search per line and one append per run.
void smtp_data_encoder::encode(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 16 + 2);
  const std::size_t n = in.size();
  std::size_t i = 0;
  if (pending_cr_ && n > 0) {
    // A CR ended the previous chunk: it was a line end either way (CRLF, or a bare CR made one).
    pending_cr_ = false;
    out += "\r\n";
    line_start_ = true;
    if (in[0] == '\n') i = 1;
  }
  std::size_t run = i;  // in[run, i) is still to be copied
  line_break_scanner breaks(in);
  while (i < n) {
    if (line_start_) {
      line_start_ = false;
      if (in[i] == '.' && mode_ == mode::data) {
        out.append(in.data() + run, i - run);
        out += '.';  // RFC 5321 4.5.2; the line's own dot starts the next run
        run = i;
      }
    }
    const std::size_t brk = breaks.next(i);
    if (brk == n) break;  // the rest is one unfinished line
    if (in[brk] == '\r' && brk + 1 < n && in[brk + 1] == '\n') {
      i = brk + 2;  // a proper CRLF stays in the run
      line_start_ = true;
      continue;
    }
    out.append(in.data() + run, brk - run);
    if (in[brk] == '\r' && brk + 1 == n) {
      pending_cr_ = true;  // the next chunk decides whether an LF follows
    } else {
      out += "\r\n";  // a bare CR or a bare LF
      line_start_ = true;
    }
    i = run = brk + 1;
  }
  out.append(in.data() + run, n - run);
}

// The same walk as encode() without output, stopping at the first byte encode() would change or
// hold back (a dot to stuff, a bare CR or LF, a CR that ends `in`).
std::size_t smtp_data_encoder::take_verbatim(std::string_view in) noexcept {
  if (pending_cr_) return 0;
  const std::size_t n = in.size();
  std::size_t i = 0;
  line_break_scanner breaks(in);
  while (i < n) {
    if (line_start_) {
      if (in[i] == '.' && mode_ == mode::data) return i;
      line_start_ = false;
    }
    const std::size_t brk = breaks.next(i);
    if (brk == n) return n;
    if (in[brk] != '\r' || brk + 1 == n || in[brk + 1] != '\n') return brk;
    i = brk + 2;
    line_start_ = true;
  }
  return n;
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
  const std::size_t n = message.size();
  std::uint64_t size = n;
  line_break_scanner breaks(message);
  for (std::size_t i = breaks.next(0); i < n; i = breaks.next(i)) {
    if (message[i] == '\r' && i + 1 < n && message[i + 1] == '\n') {
      i += 2;  // CRLF: already two octets
    } else {
      ++size;  // a bare CR or LF becomes CRLF
      ++i;
    }
  }
  if (n > 0 && message.back() != '\n' && message.back() != '\r') size += 2;
  return size;
}

}  // namespace mukai::server
