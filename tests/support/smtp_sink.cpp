// See smtp_sink.hpp. The dump format (smtp-sink(1), "DUMP FILE FORMAT"): the -S start string,
// then X-Client-Addr, X-Client-Proto, X-Helo-Args (if any), X-Mail-Args, one X-Rcpt-Args per RCPT,
// smtp-sink's own three-line Received: header, the message with CRs dropped and dot-stuffing
// undone, and one more LF from the terminating ".\r\n".
#include "tests/support/smtp_sink.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <thread>

namespace mukai::testing {

namespace {

// The -S start string: ASCII SOH cannot occur in the 7-bit text the tests send, and smtp-sink
// turns the octal escape into the byte.
constexpr std::string_view record_marker = "\x01mukai-smtp-sink-record\n";
constexpr const char* record_marker_arg = "\\001mukai-smtp-sink-record\\n";

std::string angle_address(std::string_view args) {
  const auto open = args.find('<');
  const auto close = args.find('>', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos) {
    return std::string(args.substr(0, args.find(' ')));
  }
  return std::string(args.substr(open + 1, close - open - 1));
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

void check_reject_commands(const std::string& commands) {
  std::string token;
  for (char c : commands + ",") {
    if (c == ',' || c == ' ' || c == '\t') {
      if (token == ".") throw std::invalid_argument("smtp_sink: \".\" cannot be refused (see smtp_sink.hpp)");
      token.clear();
    } else {
      token.push_back(c);
    }
  }
}

}  // namespace

std::string sink_message::body() const {
  const auto at = content.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : content.substr(at + 4);
}

std::string sink_message::header(std::string_view name) const {
  const auto end = content.find("\r\n\r\n");
  const std::string_view head =
      std::string_view(content).substr(0, end == std::string::npos ? content.size() : end + 2);
  std::size_t pos = 0;
  while (pos < head.size()) {
    auto eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    const std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || !iequals(line.substr(0, colon), name)) continue;
    std::string value(line.substr(colon + 1));
    // Unfold continuation lines.
    while (pos < head.size() && (head[pos] == ' ' || head[pos] == '\t')) {
      auto next = head.find("\r\n", pos);
      if (next == std::string_view::npos) next = head.size();
      value += head.substr(pos, next - pos);
      pos = next + 2;
    }
    const auto first = value.find_first_not_of(" \t");
    return first == std::string::npos ? std::string() : value.substr(first);
  }
  return {};
}

sink_message parse_sink_record(std::string_view record) {
  sink_message m;
  std::size_t pos = 0;
  auto next_line = [&]() -> std::string_view {
    auto eol = record.find('\n', pos);
    if (eol == std::string_view::npos) eol = record.size();
    const std::string_view line = record.substr(pos, eol - pos);
    pos = std::min(record.size(), eol + 1);
    return line;
  };
  // smtp-sink's envelope lines, up to and including its own Received: header (3 lines).
  while (pos < record.size()) {
    const std::size_t line_start = pos;
    const std::string_view line = next_line();
    if (starts_with(line, "X-Client-Addr: ")) {
      m.client_addr = line.substr(15);
    } else if (starts_with(line, "X-Client-Proto: ")) {
      // not kept
    } else if (starts_with(line, "X-Helo-Args: ")) {
      m.helo = line.substr(13);
    } else if (starts_with(line, "X-Mail-Args: ")) {
      m.mail_args = line.substr(13);
      m.mail_from = angle_address(m.mail_args);
    } else if (starts_with(line, "X-Rcpt-Args: ")) {
      m.rcpt_args.emplace_back(line.substr(13));
      m.rcpts.push_back(angle_address(m.rcpt_args.back()));
    } else if (starts_with(line, "Received: ")) {
      while (pos < record.size() && record[pos] == '\t') next_line();
      break;
    } else {
      pos = line_start;  // not smtp-sink's: the message starts here
      break;
    }
  }
  std::string_view rest = record.substr(pos);
  if (!rest.empty() && rest.back() == '\n') rest.remove_suffix(1);  // the LF of ".\r\n"
  m.content.reserve(rest.size() + rest.size() / 40);
  for (char c : rest) {
    if (c == '\n') m.content.push_back('\r');
    m.content.push_back(c);
  }
  return m;
}

smtp_sink::smtp_sink(smtp_sink_options options) : options_(std::move(options)) {
  check_reject_commands(options_.reject_commands);
  if (options_.port == 25) throw std::invalid_argument("smtp_sink: port 25 is the system MTA's");
  if (options_.port == 0) options_.port = free_loopback_port();
  start();
}

smtp_sink::~smtp_sink() { stop(); }

smtp_sink::run_files smtp_sink::files_of(int generation) const {
  const std::string n = std::to_string(generation);
  return {options_.dir / ("dump." + n), options_.dir / ("stdout." + n), options_.dir / ("stderr." + n)};
}

void smtp_sink::start() {
  if (running()) return;
  const std::filesystem::path program = find_program("smtp-sink");
  if (program.empty()) throw std::runtime_error("smtp_sink: smtp-sink not found (Debian package postfix)");
  std::filesystem::create_directories(options_.dir);
  ++generation_;
  const run_files files = files_of(generation_);

  std::vector<std::string> argv = {
      program.string(), "-4", "-c", "-h", options_.hostname, "-D", files.dump.string(), "-S",
      record_marker_arg};
  if (::geteuid() == 0) {
    // smtp-sink drops to this user after binding; the dump directory must be writable by it.
    const passwd* pw = ::getpwnam(options_.run_as.c_str());
    if (pw == nullptr) throw std::runtime_error("smtp_sink: no user " + options_.run_as);
    if (::chown(options_.dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      throw std::runtime_error("smtp_sink: cannot chown " + options_.dir.string());
    }
    argv.insert(argv.end(), {"-u", options_.run_as});
  }
  switch (options_.mode) {
    case sink_mode::accept:
      break;
    case sink_mode::temporary_failure:
      argv.insert(argv.end(), {"-r", options_.reject_commands});
      break;
    case sink_mode::permanent_failure:
      argv.insert(argv.end(), {"-f", options_.reject_commands});
      break;
    case sink_mode::disconnect_421:
      argv.insert(argv.end(), {"-Q", options_.reject_commands});
      break;
  }
  if (!options_.soft_reply.empty()) argv.insert(argv.end(), {"-b", options_.soft_reply});
  if (!options_.hard_reply.empty()) argv.insert(argv.end(), {"-B", options_.hard_reply});
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  argv.push_back("127.0.0.1:" + std::to_string(options_.port));
  argv.push_back("64");  // listen backlog

  spawn_options spawn;
  spawn.argv = argv;
  spawn.working_dir = options_.dir;
  spawn.stdout_path = files.out;
  spawn.stderr_path = files.err;
  process_ = child_process(spawn);

  // Ready when our own process holds the listening socket (another program may have taken the
  // port since free_loopback_port(): then smtp-sink exits at bind and we say so).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!is_listening(options_.port, process_.pid())) {
    if (!process_.running() || std::chrono::steady_clock::now() > deadline) {
      process_.kill9();
      throw std::runtime_error("smtp_sink: smtp-sink did not start on 127.0.0.1:" +
                               std::to_string(options_.port) + ": " + stderr_text());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void smtp_sink::stop() {
  if (process_.pid() < 0) return;
  process_.terminate(std::chrono::seconds(5));
  process_ = child_process();
}

void smtp_sink::restart(sink_mode mode) {
  stop();
  options_.mode = mode;
  start();
}

bool smtp_sink::running() { return process_.running(); }

std::string smtp_sink::relayhost() const { return "[127.0.0.1]:" + std::to_string(options_.port); }

std::size_t smtp_sink::completed_in(int generation) const {
  // "sess=1 quit=1 mesg=3\r" after each event; the last one counts.
  const std::string out = read_file_or_empty(files_of(generation).out);
  const auto at = out.rfind("mesg=");
  if (at == std::string::npos) return 0;
  return static_cast<std::size_t>(std::strtoull(out.c_str() + at + 5, nullptr, 10));
}

std::vector<sink_message> smtp_sink::messages() const {
  std::vector<sink_message> all;
  for (int g = 1; g <= generation_; ++g) {
    // Read the counter before the dump: every record it counts is already complete in the file.
    const std::size_t complete = completed_in(g);
    const std::string dump = read_file_or_empty(files_of(g).dump);
    std::size_t taken = 0;
    std::size_t pos = dump.find(record_marker);
    while (pos != std::string::npos && taken < complete) {
      const std::size_t start = pos + record_marker.size();
      const std::size_t next = dump.find(record_marker, start);
      const std::size_t end = next == std::string::npos ? dump.size() : next;
      all.push_back(parse_sink_record(std::string_view(dump).substr(start, end - start)));
      ++taken;
      pos = next;
    }
  }
  return all;
}

std::size_t smtp_sink::message_count() const {
  std::size_t n = 0;
  for (int g = 1; g <= generation_; ++g) n += completed_in(g);
  return n;
}

bool smtp_sink::wait_for_messages(std::size_t at_least, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (message_count() >= at_least) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string smtp_sink::stderr_text() const {
  std::string text;
  for (int g = 1; g <= generation_; ++g) text += read_file_or_empty(files_of(g).err);
  return text;
}

}  // namespace mukai::testing
