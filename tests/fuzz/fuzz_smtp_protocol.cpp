// libFuzzer: the sans-I/O SMTP protocol engine (server/smtp_protocol.hpp) driven the way the session
// coroutine drives it, with client bytes split into reads at sizes taken from the input, spool and TLS
// outcomes taken from input bits, and timeouts/shutdowns/low storage injected between reads.
// Any crash, leak, UB or hang is a bug; so is any broken protocol invariant, checked from outside:
//  - every reply is CRLF-terminated lines of at most 512 octets, "ddd" + SP/"-", one code, no controls;
//  - "250 ... queued as" only inside message_committed(), nothing at all while the spool works;
//  - begin/end/abort pair up; data goes only to an open message, never past max_message_size or
//    max_header_size, never a DATA line past max_text_line;
//  - an accepted DATA message has CRLF lines only and ended on a real <CRLF>.<CRLF>; without
//    normalise_bare_lf it is exactly the client's text after a "DATA" line, dot-unstuffed by a
//    reference implementation, with no earlier end of data (lines located backwards from where the
//    engine stopped reading);
//  - STARTTLS: the engine stops reading right after the STARTTLS line and asks for nothing until
//    tls_established(); no envelope learnt in plaintext survives it; tls_required holds;
//  - every accepted recipient is in relay_domains (or the postmaster rewrite): never an open relay;
//  - after close_connection() (QUIT, 421) or connection_lost() the engine never calls the sink again
//    and consumes nothing.
//
// Input layout (all fields optional; a short input uses defaults):
//   [cfg0 cfg1 cfg2 cfg3] [n] [n+1 split bytes] [4 decision bytes] client bytes...
//   cfg0 bit0 tls_available, bit1 tls_required, bit2 normalise_bare_lf, bit3 implicit TLS,
//        bits4+5 both set: client refused, bit6 postmaster address set, bit7 small limits (cfg1/cfg2).
//   cfg3 bits0-1 the last event before the final connection_lost(): none/lost/timeout/shutdown_now;
//        bit2 relay_domains = "*".
//   split byte b: read size (b & 0x1F) + 1, times 37 if b & 0x20; if (b & 0xC0) == 0xC0 an event
//        (timeout, begin_shutdown, shutdown_now, storage low/ok) follows the read. Cycled.
//   decision bits, cycled: one per end_message (commit or fail) and per STARTTLS (handshake ok or not),
//        one more for a failure's kind (temporary or permanent) and for events.
// tests/fuzz/make-seeds writes seeds in this layout.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/smtp_protocol.hpp"

namespace {

using namespace mukai::server;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_smtp_protocol: invariant broken: %s\n", what);
  std::abort();
}
void require(bool ok, const char* what) {
  if (!ok) fail(what);
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lower(x) == lower(y);
         });
}
bool iends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

// Our own reading of relay_domains (smtp_server_config), independent of the engine's.
bool relay_allowed(const std::vector<std::string>& domains, std::string_view domain) {
  for (const std::string& d : domains) {
    if (d == "*") return true;
    if (!d.empty() && d.front() == '.') {
      if (domain.size() > d.size() && iends_with(domain, d)) return true;
    } else if (iequals(d, domain)) {
      return true;
    }
  }
  return false;
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Whether the command line that ends just before offset `end` (just past its LF) is `verb`, allowing
// trailing spaces, a CRLF or (normalise_bare_lf) a bare LF. Only the end of the line is compared: a
// command can directly follow the octets of a BDAT chunk, which are not line-delimited.
// `floor` is where the current stream epoch starts.
bool command_before(std::string_view s, std::size_t end, std::size_t floor, std::string_view verb) {
  if (end == 0 || end <= floor || s[end - 1] != '\n') return false;
  std::string_view line = s.substr(floor, end - 1 - floor);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
  return iends_with(line, verb);
}

class bit_source {
 public:
  explicit bit_source(std::string_view bytes) : bytes_(bytes) {}
  bool next() {
    if (bytes_.empty()) return (counter_++ % 4) != 3;  // mostly "success" without decision bytes
    const auto byte = static_cast<unsigned char>(bytes_[(pos_ / 8) % bytes_.size()]);
    const bool bit = (byte >> (pos_ % 8)) & 1;
    ++pos_;
    return bit;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
  std::size_t counter_ = 0;
};

enum class msg_state { none, open, ended, aborted };

class checking_sink final : public smtp_event_sink {
 public:
  explicit checking_sink(const smtp_server_config& cfg) : cfg_(cfg) {}

  // Harness state the sink checks against.
  bool in_commit = false;      // inside message_committed()
  bool in_fail = false;        // inside message_failed()
  std::string expected_id;     // the queue id being committed
  smtp_spool_failure expected_failure = smtp_spool_failure::temporary;
  bool engine_tls_active = false;  // mirrors protocol.tls_active() at the time of the call
  bool in_connection_lost = false;

  // Observations.
  std::vector<std::string> replies;
  msg_state msg = msg_state::none;
  bool msg_chunking = false;
  std::string data;  // the current/last message's stored text
  bool data_message_ended = false;  // a DATA (not BDAT) message just ended: check it after receive()
  bool tls_requested = false;
  bool closed = false;
  bool silent = false;  // the engine must not call the sink at all (closed, lost, awaiting spool/TLS)
  std::size_t queued_replies = 0;
  std::size_t result_replies = 0;  // replies seen inside message_committed/failed

  void send_reply(std::string_view r) override {
    entry("send_reply");
    check_reply(r);
    const bool queued = r.starts_with("250 2.0.0 Ok: queued as ");
    if (in_commit) {
      ++result_replies;
      if (result_replies == 1) {
        require(r == "250 2.0.0 Ok: queued as " + expected_id + "\r\n", "commit reply is not 250 queued as <id>");
        ++queued_replies;
      } else {
        require(r.starts_with("421 "), "extra reply after a commit other than a 421");
      }
    } else if (in_fail) {
      ++result_replies;
      if (result_replies == 1) {
        require(r.starts_with(expected_failure == smtp_spool_failure::temporary ? "451 4.3.0 " : "554 5.3.0 "),
                "spool failure reply is not 451 4.3.0 / 554 5.3.0");
      } else {
        require(r.starts_with("421 "), "extra reply after a spool failure other than a 421");
      }
    } else {
      require(!queued, "250 queued as outside message_committed()");
    }
    require(!in_connection_lost, "connection_lost() sent a reply");
    if (replies.empty())
      require(r.starts_with("220 ") || r.starts_with("554 5.7.1 ") || r.starts_with("421 "),
              "first reply is not a greeting");
    replies.emplace_back(r);
  }

  void begin_message(const smtp_envelope& e) override {
    entry("begin_message");
    require(msg != msg_state::open, "begin_message while a message is open");
    require(msg != msg_state::ended, "begin_message while the spool has the previous message");
    require(client_allowed, "begin_message for a refused client");
    require(!in_commit && !in_fail && !in_connection_lost, "begin_message from a result/lost call");
    require(!e.recipients.empty() && e.recipients.size() <= cfg_.limits.max_recipients,
            "recipient count out of bounds");
    require(!cfg_.tls_required || (e.tls && engine_tls_active), "message accepted without TLS but tls_required");
    require(e.tls == engine_tls_active, "envelope.tls disagrees with the session");
    require(!e.helo_name.empty() && std::all_of(e.helo_name.begin(), e.helo_name.end(),
                                                 [](char c) { return c >= 33 && c <= 126; }),
            "helo name not printable ASCII");
    require(e.smtputf8 || is_ascii(e.sender), "non-ASCII sender without SMTPUTF8");
    require(!e.chunking || e.esmtp, "BDAT without EHLO");
    if (e.declared_size) require(*e.declared_size <= cfg_.limits.max_message_size, "declared SIZE above limit");
    for (const smtp_recipient& r : e.recipients) {
      require(!r.mailbox.empty(), "empty recipient");
      require(e.smtputf8 || is_ascii(r.mailbox), "non-ASCII recipient without SMTPUTF8");
      if (!cfg_.postmaster_address.empty() && r.mailbox == cfg_.postmaster_address) continue;
      const std::size_t at = r.mailbox.rfind('@');
      require(at != std::string::npos, "recipient without a domain");
      require(relay_allowed(cfg_.relay_domains, std::string_view(r.mailbox).substr(at + 1)),
              "recipient outside relay_domains accepted (open relay)");
    }
    if (!e.chunking)
      require(!replies.empty() && replies.back().starts_with("354 "), "DATA message began without a 354");
    msg = msg_state::open;
    msg_chunking = e.chunking;
    data.clear();
    header_done_ = header_last_cr_ = false;
    header_size_ = header_line_ = line_ = 0;
  }

  void append_message_data(std::string_view bytes) override {
    entry("append_message_data");
    require(msg == msg_state::open, "data for a message that is not open");
    require(!bytes.empty(), "empty data piece");
    data.append(bytes);
    require(data.size() <= cfg_.limits.max_message_size, "message data past max_message_size");
    for (const char c : bytes) {
      if (!header_done_) {  // the header block: up to and including the first empty line
        ++header_size_;
        if (c == '\n') {
          header_done_ = header_line_ == 0 || (header_line_ == 1 && header_last_cr_);
          header_line_ = 0;
          header_last_cr_ = false;
        } else {
          ++header_line_;
          header_last_cr_ = c == '\r';
        }
      }
      // Stored DATA lines (CR and LF not counted) never exceed max_text_line - 2 octets.
      if (c == '\n') {
        line_ = 0;
      } else if (c != '\r') {
        ++line_;
      }
      if (!msg_chunking) require(line_ <= cfg_.limits.max_text_line - 2, "stored DATA line past max_text_line");
    }
    require(header_size_ <= cfg_.limits.max_header_size, "header block past max_header_size");
  }

  void end_message() override {
    entry("end_message");
    require(msg == msg_state::open, "end_message without an open message");
    msg = msg_state::ended;
    silent = true;  // nothing until message_committed/failed
    if (!msg_chunking) data_message_ended = true;
  }

  void abort_message() override {
    entry_allow_lost("abort_message");
    require(msg == msg_state::open, "abort_message without an open message");
    msg = msg_state::aborted;
  }

  void start_tls() override {
    entry("start_tls");
    require(cfg_.tls_available && !engine_tls_active, "start_tls without a certificate or with TLS active");
    require(!replies.empty() && replies.back() == "220 2.0.0 Ready to start TLS\r\n", "start_tls without its 220");
    require(msg != msg_state::open, "start_tls inside a message");
    tls_requested = true;
    silent = true;
  }

  void close_connection() override {
    entry_allow_tls("close_connection");
    require(!closed, "close_connection twice");
    require(msg != msg_state::open, "close_connection with a message still open");
    if (!tls_requested)
      require(!replies.empty() && (replies.back().starts_with("221 ") || replies.back().starts_with("421 ")),
              "close_connection not after 221/421");
    closed = true;
    silent = true;
  }

  bool client_allowed = true;

 private:
  void entry(const char* what) {
    if (silent) {
      std::fprintf(stderr, "fuzz_smtp_protocol: %s while the engine must be silent\n", what);
      std::abort();
    }
  }
  // abort_message() may come from connection_lost() (the only call allowed after the session ended).
  void entry_allow_lost(const char* what) {
    if (!in_connection_lost) entry(what);
  }
  // on_timeout()/shutdown_now() while awaiting TLS close without a reply.
  void entry_allow_tls(const char* what) {
    if (!(tls_requested && !closed)) entry(what);
  }

  static void check_reply(std::string_view r) {
    require(r.size() >= 6 && r.ends_with("\r\n"), "reply not CRLF-terminated");
    std::size_t begin = 0;
    while (begin < r.size()) {
      const std::size_t crlf = r.find("\r\n", begin);
      require(crlf != std::string_view::npos, "reply line not CRLF-terminated");
      const std::string_view line = r.substr(begin, crlf - begin);
      require(line.size() + 2 <= 512, "reply line longer than 512 octets");
      require(line.size() >= 4, "reply line too short");
      require(line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' &&
                  line[2] <= '9',
              "reply line does not start with a 3-digit code");
      require(line.substr(0, 3) == r.substr(0, 3), "multi-line reply mixes codes");
      const bool last = crlf + 2 == r.size();
      require(line[3] == (last ? ' ' : '-'), "reply continuation marker wrong");
      for (const char ch : line) {
        const auto c = static_cast<unsigned char>(ch);
        require(c >= 0x20 && c != 0x7F, "control character in a reply");
      }
      begin = crlf + 2;
    }
  }

  const smtp_server_config& cfg_;
  bool header_done_ = false;
  bool header_last_cr_ = false;
  std::size_t header_size_ = 0;
  std::size_t header_line_ = 0;
  std::size_t line_ = 0;
};

struct parsed_input {
  std::uint8_t cfg[4] = {0, 0, 0, 0};
  std::string_view splits;
  std::string_view decisions;
  std::string_view client;
};

parsed_input parse(std::string_view in) {
  parsed_input p;
  for (int i = 0; i < 4 && !in.empty(); ++i) {
    p.cfg[i] = static_cast<std::uint8_t>(in.front());
    in.remove_prefix(1);
  }
  if (in.empty()) return p;
  const std::size_t n = static_cast<unsigned char>(in.front()) % 16 + 1;
  in.remove_prefix(1);
  p.splits = in.substr(0, n);
  in.remove_prefix(p.splits.size());
  p.decisions = in.substr(0, 4);
  in.remove_prefix(p.decisions.size());
  p.client = in;
  return p;
}

smtp_server_config make_config(const parsed_input& p) {
  smtp_server_config c;
  c.hostname = "mx.fuzz.example";
  c.tls_available = p.cfg[0] & 0x01;
  c.tls_required = (p.cfg[0] & 0x02) && c.tls_available;
  c.limits.normalise_bare_lf = p.cfg[0] & 0x04;
  if (p.cfg[0] & 0x40) c.postmaster_address = "postmaster@city.example.lg.jp";
  if (p.cfg[3] & 0x04) {
    c.relay_domains = {"*"};
  } else {
    c.relay_domains = {"example.lg.jp", ".city.example.lg.jp", "[192.0.2.1]"};
  }
  c.limits.max_message_size = 1 << 20;
  if (p.cfg[0] & 0x80) {
    const unsigned a = p.cfg[1];
    const unsigned b = p.cfg[2];
    c.limits.max_command_line = 64 + (a & 0x03) * 64;
    c.limits.max_text_line = 3 + ((a >> 2) & 0x07) * 11;
    c.limits.max_message_size = 1 + (b & 0x0F) * 37;
    c.limits.max_header_size = 1 + ((b >> 4) & 0x0F) * 23;
    c.limits.max_recipients = 1 + ((a >> 5) & 0x03);
    c.limits.max_errors = 1 + (b & 0x07) * 3;
    c.limits.max_commands = 1 + (a & 0x3F) * 5;
    c.limits.max_messages = 1 + ((b >> 3) & 0x03);
    c.limits.max_commands_per_receive = 1 + ((a >> 7) & 0x01) * 3 + ((b >> 6) & 0x03);
  }
  return c;
}

class driver {
 public:
  driver(const parsed_input& in, const smtp_server_config& cfg)
      : in_(in),
        cfg_(std::make_shared<const smtp_server_config>(cfg)),
        sink_(*cfg_),
        bits_(in.decisions),
        proto_(cfg_, options(in), sink_) {
    sink_.client_allowed = (in.cfg[0] & 0x30) != 0x30;
    sink_.engine_tls_active = proto_.tls_active();
  }

  void run() {
    require(!proto_.wants_input(), "wants input before start()");
    proto_.start();
    require(sink_.replies.size() == 1, "start() did not queue exactly the greeting");
    const std::string_view client = in_.client;
    std::size_t split_index = 0;
    while (fed_ < client.size() && !ended_) {
      std::size_t len = 1;
      unsigned char b = 0;
      if (!in_.splits.empty()) {
        b = static_cast<unsigned char>(in_.splits[split_index++ % in_.splits.size()]);
        len = (b & 0x1F) + 1;
        if (b & 0x20) len *= 37;
      } else {
        len = client.size();
      }
      len = std::min(len, client.size() - fed_);
      fed_ += len;  // the new bytes join what the engine has not consumed yet
      settle();
      if ((b & 0xC0) == 0xC0 && !ended_) inject_event();
    }
    if (!ended_) {
      switch (in_.cfg[3] & 0x03) {
        case 0: break;
        case 1: lose(); break;
        case 2: call([&] { proto_.on_timeout(); }); settle(); break;
        case 3: call([&] { proto_.shutdown_now(); }); settle(); break;
      }
    }
    if (!ended_) lose();
    finish_checks();
  }

 private:
  static smtp_session_options options(const parsed_input& in) {
    smtp_session_options o;
    o.client_allowed = (in.cfg[0] & 0x30) != 0x30;
    o.tls_active = in.cfg[0] & 0x08;
    return o;
  }

  template <class F>
  void call(F&& f) {
    f();
    sink_.engine_tls_active = proto_.tls_active();
    after_call();
  }

  // Bookkeeping common to every engine call.
  void after_call() {
    if (sink_.closed) {
      require(proto_.is_closed() && !proto_.wants_input(), "close_connection but the engine is not closed");
      end_session();
    }
  }

  void end_session() {
    ended_ = true;
    consumed_ = fed_;  // the I/O layer drops everything it holds
    sink_.silent = true;
  }

  void lose() {
    sink_.in_connection_lost = true;
    proto_.connection_lost();
    sink_.in_connection_lost = false;
    require(proto_.is_closed() && !proto_.wants_input(), "connection_lost() left the engine open");
    end_session();
  }

  std::string_view pending() const { return in_.client.substr(consumed_, fed_ - consumed_); }

  void settle() {
    for (;;) {
      if (ended_) return;
      while (consumed_ < fed_ && proto_.wants_input()) {
        const std::string_view input = pending();
        const std::size_t n = proto_.receive(input);
        sink_.engine_tls_active = proto_.tls_active();
        require(n <= input.size(), "receive() consumed more than offered");
        require(n > 0, "receive() made no progress while wanting input");
        consumed_ += n;
        if (sink_.data_message_ended) {
          sink_.data_message_ended = false;
          check_data_message();
        }
        if (sink_.tls_requested) check_starttls_stop();
        after_call();
        if (ended_) return;
      }
      if (proto_.awaiting_message_result()) {
        require(sink_.msg == msg_state::ended, "awaiting the spool without an ended message");
        require(proto_.receive(pending()) == 0, "receive() consumed input while awaiting the spool");
        answer_spool();
        continue;
      }
      if (proto_.awaiting_tls()) {
        answer_tls();
        continue;
      }
      return;
    }
  }

  void answer_spool() {
    sink_.silent = false;
    sink_.result_replies = 0;
    const std::size_t accepted_before = proto_.messages_accepted();
    if (bits_.next()) {
      sink_.expected_id = "Q" + std::to_string(++ids_);
      sink_.in_commit = true;
      proto_.message_committed(sink_.expected_id);
      sink_.in_commit = false;
      ++commits_;
      require(sink_.result_replies >= 1, "message_committed() sent no reply");
      require(proto_.messages_accepted() == accepted_before + 1, "messages_accepted() not counted");
    } else {
      sink_.expected_failure = bits_.next() ? smtp_spool_failure::temporary : smtp_spool_failure::permanent;
      sink_.in_fail = true;
      proto_.message_failed(sink_.expected_failure);
      sink_.in_fail = false;
      require(sink_.result_replies >= 1, "message_failed() sent no reply");
      require(proto_.messages_accepted() == accepted_before, "a failed message was counted as accepted");
    }
    sink_.msg = msg_state::none;
    sink_.engine_tls_active = proto_.tls_active();
    after_call();
  }

  // After the STARTTLS 220 the engine must have stopped right after the STARTTLS line.
  void check_starttls_stop() {
    const std::string_view stream = in_.client.substr(0, consumed_);
    require(command_before(stream, stream.size(), epoch_, "STARTTLS"),
            "engine read past the STARTTLS line (or asked for TLS elsewhere)");
  }

  void answer_tls() {
    // The rest of this read was sent in plaintext after STARTTLS: discarded, never interpreted.
    consumed_ = fed_;
    epoch_ = fed_;
    require(proto_.receive("EHLO x\r\n") == 0, "receive() consumed input while awaiting TLS");
    if (bits_.next()) {
      sink_.silent = false;
      proto_.tls_established();
      sink_.engine_tls_active = proto_.tls_active();
      sink_.tls_requested = false;
      require(proto_.tls_active(), "tls_established() did not set tls_active");
      require(proto_.envelope().helo_name.empty() && proto_.envelope().recipients.empty() &&
                  proto_.envelope().sender.empty(),
              "envelope learnt before TLS survived the handshake");
      require(proto_.wants_input(), "engine does not read after the handshake");
      after_call();
    } else {
      lose();  // failed handshake: the I/O layer drops the connection
    }
  }

  void inject_event() {
    const bool a = bits_.next();
    const bool b = bits_.next();
    if (!a && !b) {
      call([&] { proto_.on_timeout(); });
    } else if (!a && b) {
      call([&] { proto_.begin_shutdown(); });
    } else if (a && !b) {
      call([&] { proto_.shutdown_now(); });
    } else {
      storage_low_ = !storage_low_;
      proto_.set_storage_low(storage_low_);
    }
    settle();
  }

  // A DATA message the engine just ended: walking back from where the engine stopped reading, one
  // client line per stored line plus the terminator, must lead to a "DATA" command line; and those
  // client lines, dot-unstuffed by RFC 5321 4.5.2 (a reference implementation here), must be exactly
  // the stored text, with no end of data before the last line.
  void check_data_message() {
    const std::string& content = sink_.data;
    const std::string_view stream = in_.client.substr(0, consumed_);
    require(stream.ends_with(".\r\n"), "DATA ended without .<CRLF>");
    // Accepted text has CRLF line ends only (bare CR/LF refuse the message or, with normalise_bare_lf,
    // become CRLF); so it is empty or ends in CRLF.
    for (std::size_t i = 0; i < content.size(); ++i) {
      if (content[i] == '\r') require(i + 1 < content.size() && content[i + 1] == '\n', "bare CR in accepted data");
      if (content[i] == '\n') require(i > 0 && content[i - 1] == '\r', "bare LF in accepted data");
    }
    if (!content.empty()) {
      require(content.ends_with("\r\n"), "accepted data does not end with CRLF");
      require(stream.ends_with("\r\n.\r\n"), "DATA ended on something other than <CRLF>.<CRLF>");
    }
    if (cfg_->limits.normalise_bare_lf) return;  // bare LFs became CRLFs: lines no longer correspond
    const auto lines = static_cast<std::size_t>(std::count(content.begin(), content.end(), '\n'));
    std::size_t begin = stream.size();
    for (std::size_t j = 0; j <= lines; ++j) {
      require(begin >= 2, "message text does not follow a DATA command line");
      const std::size_t lf = stream.rfind('\n', begin - 2);
      require(lf != std::string_view::npos && lf >= epoch_, "message text does not follow a DATA command line");
      begin = lf + 1;
    }
    require(begin >= 2 && stream[begin - 2] == '\r', "DATA command line not CRLF-terminated");
    require(command_before(stream, begin, epoch_, "DATA"), "message text does not follow a DATA command line");
    // Reference unstuffing of the client's lines.
    std::string unstuffed;
    std::size_t at = begin;
    bool terminated = false;
    while (at < stream.size()) {
      const std::size_t lf = stream.find('\n', at);
      require(lf != std::string_view::npos && lf > at && stream[lf - 1] == '\r', "client data line not CRLF");
      std::string_view line = stream.substr(at, lf - 1 - at);
      require(line.find_first_of("\r\n") == std::string_view::npos, "bare CR/LF in an accepted client line");
      at = lf + 1;
      if (line == ".") {
        require(at == stream.size(), "engine read past the end of data");
        terminated = true;
        break;
      }
      if (!line.empty() && line.front() == '.') line.remove_prefix(1);
      unstuffed.append(line).append("\r\n");
    }
    require(terminated, "DATA ended without its terminator line");
    require(unstuffed == content, "stored data differs from the client's dot-unstuffed text");
  }

  void finish_checks() {
    require(ended_ && proto_.is_closed(), "session not over at the end");
    require(sink_.msg != msg_state::open, "a message was left open (no end/abort)");
    require(sink_.queued_replies == commits_, "a 250 queued as without a commit");
    // Nothing may come out of a closed engine.
    sink_.silent = true;
    require(proto_.receive("QUIT\r\n") == 0, "closed engine consumed input");
    proto_.on_timeout();
    proto_.shutdown_now();
    proto_.begin_shutdown();
    proto_.tls_established();
    proto_.message_committed("Q0");
    proto_.message_failed();
    sink_.in_connection_lost = true;
    proto_.connection_lost();
    sink_.in_connection_lost = false;
    require(!proto_.wants_input(), "closed engine wants input");
  }

  const parsed_input& in_;
  std::shared_ptr<const smtp_server_config> cfg_;
  checking_sink sink_;
  bit_source bits_;
  smtp_protocol proto_;
  std::size_t fed_ = 0;       // client bytes handed to the I/O layer so far
  std::size_t consumed_ = 0;  // of which consumed by the engine or discarded
  std::size_t epoch_ = 0;     // start of the current stream (after the last STARTTLS discard)
  std::size_t ids_ = 0;
  std::size_t commits_ = 0;
  bool storage_low_ = false;
  bool ended_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const parsed_input in = parse(std::string_view(reinterpret_cast<const char*>(data), size));
  const smtp_server_config cfg = make_config(in);
  driver d(in, cfg);
  d.run();
  return 0;
}
