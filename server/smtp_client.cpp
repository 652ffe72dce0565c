// The delivery client's SMTP session; see smtp_client.hpp for the contract.
#include "server/smtp_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <span>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>
#include <optional>
#include <stdexcept>
#include <utility>

#include "server/io_deadline.hpp"
#include "server/line_scan.hpp"
#include "server/smtp_data_encoder.hpp"

namespace mukai::server {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using duration = std::chrono::steady_clock::duration;

namespace {

constexpr std::size_t max_stored_reply = 512;  // what the spool keeps of a reply

class smtp_client_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mukai.smtp_client"; }
  std::string message(int ev) const override {
    switch (static_cast<smtp_client_errc>(ev)) {
      case smtp_client_errc::resolve_failed:
        return "host name lookup failed";
      case smtp_client_errc::malformed_reply:
        return "malformed SMTP reply";
      case smtp_client_errc::reply_too_long:
        return "SMTP reply line too long";
      case smtp_client_errc::too_many_reply_lines:
        return "SMTP reply has too many lines";
      case smtp_client_errc::connection_closed:
        return "connection closed by the server";
      case smtp_client_errc::greeting_rejected:
        return "server refused the session at the greeting";
      case smtp_client_errc::helo_rejected:
        return "server refused EHLO and HELO";
      case smtp_client_errc::starttls_unavailable:
        return "STARTTLS required but not available";
      case smtp_client_errc::tls_failed:
        return "TLS handshake failed";
      case smtp_client_errc::service_closing:
        return "server is closing the session (421)";
      case smtp_client_errc::unexpected_reply:
        return "unexpected SMTP reply";
    }
    return "unknown smtp client error";
  }
};

// Printable ASCII only: replies end up in logs, the delivery state and DSNs.
void append_printable(std::string& out, std::string_view text) {
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c < 0x7F) ? ch : '?';
  }
}

std::string bounded(std::string s) {
  if (s.size() > max_stored_reply) s.resize(max_stored_reply);
  return s;
}

struct smtp_reply {
  int code = 0;
  std::vector<std::string> lines;  // text after "ddd-" / "ddd ", CR LF removed

  [[nodiscard]] int kind() const noexcept { return code / 100; }

  // "550 5.1.1 first line second line", printable ASCII, at most 512 bytes. A continuation line's
  // repeated enhanced status code is dropped.
  [[nodiscard]] std::string text() const {
    std::string out = std::to_string(code);
    std::string_view first_status;
    for (std::size_t i = 0; i < lines.size() && out.size() < max_stored_reply; ++i) {
      std::string_view line = lines[i];
      if (i == 0) {
        first_status = line.substr(0, line.find(' '));
      } else if (!first_status.empty() && line.starts_with(first_status) &&
                 (line.size() == first_status.size() || line[first_status.size()] == ' ')) {
        line.remove_prefix(std::min(line.size(), first_status.size() + 1));
      }
      if (line.empty()) continue;
      out += ' ';
      append_printable(out, line);
    }
    return bounded(std::move(out));
  }
};

struct server_capabilities {
  bool esmtp = false;
  bool pipelining = false;
  bool size = false;
  std::uint64_t size_limit = 0;  // 0 = none announced
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool chunking = false;
  bool starttls = false;
};

char upper(char c) noexcept { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

server_capabilities parse_ehlo(const smtp_reply& r) {
  server_capabilities caps;
  caps.esmtp = true;
  for (std::size_t i = 1; i < r.lines.size(); ++i) {  // line 0 is the server's name and greeting
    std::string line = r.lines[i];
    std::transform(line.begin(), line.end(), line.begin(), upper);
    const auto space = line.find(' ');
    const std::string keyword = line.substr(0, space);
    if (keyword == "PIPELINING") caps.pipelining = true;
    if (keyword == "8BITMIME") caps.eightbitmime = true;
    if (keyword == "SMTPUTF8") caps.smtputf8 = true;
    if (keyword == "DSN") caps.dsn = true;
    if (keyword == "CHUNKING") caps.chunking = true;
    if (keyword == "STARTTLS") caps.starttls = true;
    if (keyword == "SIZE") {
      caps.size = true;
      if (space != std::string::npos) {
        std::uint64_t limit = 0;
        bool ok = space + 1 < line.size();
        for (std::size_t k = space + 1; k < line.size() && ok; ++k) {
          if (line[k] < '0' || line[k] > '9' || limit > (UINT64_MAX - 9) / 10) {
            ok = false;
          } else {
            limit = limit * 10 + static_cast<std::uint64_t>(line[k] - '0');
          }
        }
        if (ok) caps.size_limit = limit;
      }
    }
  }
  return caps;
}

// An address we are willing to put between < and >: no control byte (CR LF would inject a command)
// and no angle bracket (it would end the path and inject parameters).
bool sendable_address(std::string_view a) noexcept {
  if (a.size() > 1000) return false;
  return std::none_of(a.begin(), a.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7F || c == '<' || c == '>';
  });
}

// RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=", hexchar = "+" 2HEX.
bool valid_xtext(std::string_view s, std::size_t max_size) noexcept {
  if (s.empty() || s.size() > max_size) return false;
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '+') {
      if (i + 2 >= s.size() || !hex(s[i + 1]) || !hex(s[i + 2])) return false;
      i += 2;
    } else if (c < 0x21 || c > 0x7E || c == '=') {
      return false;
    }
  }
  return true;
}

bool valid_orcpt(std::string_view s) noexcept {
  const auto semi = s.find(';');
  if (semi == 0 || semi == std::string_view::npos || semi + 1 >= s.size()) return false;
  return valid_xtext(s, 500);
}

// NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1).
bool valid_notify(std::string_view s) noexcept {
  std::string up(s);
  std::transform(up.begin(), up.end(), up.begin(), upper);
  if (up == "NEVER") return true;
  if (up.empty()) return false;
  std::size_t start = 0;
  while (start <= up.size()) {
    const auto comma = std::min(up.find(',', start), up.size());
    const std::string_view item = std::string_view(up).substr(start, comma - start);
    if (item != "SUCCESS" && item != "FAILURE" && item != "DELAY") return false;
    start = comma + 1;
  }
  return true;
}

std::string tls_error_text(SSL* ssl, const boost::system::error_code& ec) {
  if (ssl != nullptr) {
    const long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
      return std::string("certificate verification failed: ") + X509_verify_cert_error_string(v);
  }
  return ec.message();
}

}  // namespace

const std::error_category& smtp_client_category() noexcept {
  static const smtp_client_category_impl category;
  return category;
}

std::error_code make_error_code(smtp_client_errc e) noexcept {
  return {static_cast<int>(e), smtp_client_category()};
}

std::string_view to_string(rcpt_status s) noexcept {
  switch (s) {
    case rcpt_status::delivered:
      return "delivered";
    case rcpt_status::temporary:
      return "temporary";
    case rcpt_status::permanent:
      return "permanent";
  }
  return "?";
}

smtp_client_options smtp_client_options::from_config(const config::mukai_config& c) {
  smtp_client_options o;
  o.helo_name = c.smtp.hostname;
  o.ca_file = c.delivery.ca_file;
  return o;
}

// One SMTP session for one message. Lives in the coroutine frame of smtp_client::send.
class smtp_client_session {
 public:
  smtp_client_session(const smtp_client& client, const smtp_hop& hop, const outgoing_message& message,
                      bool allow_tls, const asio::any_io_executor& ex)
      : client_(client),
        opts_(client.options_),
        hop_(hop),
        message_(message),
        allow_tls_(allow_tls),
        socket_(ex),
        remote_(endpoint_text(hop)) {
    slots_.reserve(message.recipients.size());
    for (std::size_t index : message.recipients) {
      slot s;
      s.index = index;
      slots_.push_back(std::move(s));
    }
  }

  asio::awaitable<delivery_attempt_result> run() {
    co_await run_session();
    co_return finish();
  }

 private:
  enum class slot_state : std::uint8_t { open, accepted, final };
  struct slot {
    std::size_t index = 0;
    slot_state state = slot_state::open;
    rcpt_status status = rcpt_status::temporary;
    std::string reply;
    std::string remote;
  };
  enum class command_kind : std::uint8_t { mail, rcpt, data };
  struct command {
    command_kind kind;
    std::string line;
    std::size_t slot = 0;  // for rcpt
  };

  // ---- the session ----------------------------------------------------------------------------

  asio::awaitable<void> run_session() {
    const bool connected = co_await connect();
    if (!connected) co_return;

    auto greeting = co_await read_reply(opts_.greeting_timeout, "while receiving the initial greeting");
    if (!greeting) co_return;
    if (greeting->code != 220) {
      fail_with_reply(
          greeting->code == 421 ? smtp_client_errc::service_closing : smtp_client_errc::greeting_rejected,
          *greeting);
      if (greeting->code != 421) {
        co_await quit();
      }
      co_return;
    }

    const bool greeted = co_await hello();
    if (!greeted) co_return;

    if (hop_.starttls == starttls_mode::required && !caps_.starttls) {
      fail_local(smtp_client_errc::starttls_unavailable,
                 "4.7.4 TLS is required for " + remote_ + ", but it does not offer STARTTLS");
      co_await quit();
      co_return;
    }
    if (hop_.starttls != starttls_mode::off && allow_tls_ && caps_.starttls) {
      const bool secured = co_await start_tls();
      if (!secured) co_return;
    }

    co_await transaction();
    co_await quit();
  }

  asio::awaitable<bool> connect() {
    const auto ex = socket_.get_executor();
    std::vector<tcp::endpoint> endpoints;
    if (hop_.host_is_ip) {
      boost::system::error_code ec;
      const auto address = asio::ip::make_address(hop_.host, ec);
      if (ec) {
        fail_local(smtp_client_errc::resolve_failed, "4.4.4 bad address " + hop_.host);
        co_return false;
      }
      endpoints.emplace_back(address, hop_.port);
    } else {
      tcp::resolver resolver(ex);
      auto resolved = co_await await_with_deadline(
          resolver.async_resolve(hop_.host, std::to_string(hop_.port), tcp::resolver::numeric_service,
                                 asio::as_tuple(asio::use_awaitable)),
          opts_.connect_timeout, [&resolver] { resolver.cancel(); });
      if (!resolved) {
        check_cancelled(resolved.error());
        fail_local(resolved.error(), "4.4.4 host name lookup for " + hop_.host + " timed out");
        co_return false;
      }
      auto& [ec, results] = *resolved;
      if (ec) {
        fail_local(smtp_client_errc::resolve_failed,
                   "4.4.4 host name lookup for " + hop_.host + " failed: " + ec.message());
        co_return false;
      }
      for (const auto& entry : results) {
        if (endpoints.size() >= opts_.max_addresses) break;
        endpoints.push_back(entry.endpoint());
      }
      if (endpoints.empty()) {
        fail_local(smtp_client_errc::resolve_failed, "4.4.4 host " + hop_.host + " has no address");
        co_return false;
      }
    }

    std::string last_error;
    std::error_code last_code;
    for (const auto& ep : endpoints) {
      boost::system::error_code ec;
      if (socket_.is_open()) socket_.close(ec);
      socket_.open(ep.protocol(), ec);
      if (ec) {
        last_code = ec;
        last_error = ec.message();
        continue;
      }
      auto connected =
          co_await await_with_deadline(socket_.async_connect(ep, asio::as_tuple(asio::use_awaitable)),
                                       opts_.connect_timeout, [this] { close_socket(); });
      if (!connected) {
        check_cancelled(connected.error());
        last_code = connected.error();
        last_error = "connection timed out";
        continue;
      }
      if (auto [cec] = *connected; cec) {
        last_code = cec;
        last_error = cec.message();
        continue;
      }
      remote_ = ep.address().is_v6() ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
                                     : ep.address().to_string() + ":" + std::to_string(ep.port());
      if (!hop_.host_is_ip) remote_ = hop_.host + "[" + remote_ + "]";
      result_.remote = remote_;
      co_return true;
    }
    boost::system::error_code ignored;
    socket_.close(ignored);
    fail_local(last_code, "4.4.1 connect to " + remote_ + ": " + last_error);
    co_return false;
  }

  // EHLO, falling back to HELO when EHLO is refused (other than with 421).
  asio::awaitable<bool> hello() {
    const std::string ehlo_line = "EHLO " + opts_.helo_name + "\r\n";
    const bool ehlo_sent = co_await write_all(ehlo_line, opts_.helo_timeout, "while sending EHLO");
    if (!ehlo_sent) co_return false;
    auto ehlo = co_await read_reply(opts_.helo_timeout, "after EHLO");
    if (!ehlo) co_return false;
    if (ehlo->kind() == 2) {
      caps_ = parse_ehlo(*ehlo);
      co_return true;
    }
    if (ehlo->code == 421) {
      fail_with_reply(smtp_client_errc::service_closing, *ehlo);
      co_return false;
    }
    const std::string helo_line = "HELO " + opts_.helo_name + "\r\n";
    const bool helo_sent = co_await write_all(helo_line, opts_.helo_timeout, "while sending HELO");
    if (!helo_sent) co_return false;
    auto helo = co_await read_reply(opts_.helo_timeout, "after HELO");
    if (!helo) co_return false;
    if (helo->kind() == 2) {
      caps_ = server_capabilities{};
      co_return true;
    }
    fail_with_reply(helo->code == 421 ? smtp_client_errc::service_closing : smtp_client_errc::helo_rejected,
                    *helo);
    if (helo->code != 421) {
      co_await quit();
    }
    co_return false;
  }

  asio::awaitable<bool> start_tls() {
    const bool required = hop_.starttls == starttls_mode::required;
    const bool starttls_sent =
        co_await write_all("STARTTLS\r\n", opts_.starttls_timeout, "while sending STARTTLS");
    if (!starttls_sent) co_return false;
    auto reply = co_await read_reply(opts_.starttls_timeout, "after STARTTLS");
    if (!reply) co_return false;
    if (reply->code != 220) {
      if (reply->code == 421) {
        fail_with_reply(smtp_client_errc::service_closing, *reply);
        co_return false;
      }
      if (required) {
        fail_with_reply(smtp_client_errc::starttls_unavailable, *reply);
        co_await quit();
        co_return false;
      }
      co_return true;  // opportunistic: carry on in clear on this connection
    }
    // RFC 3207 4.2: anything the server sent after its 220 came before the protection started (a
    // man in the middle may have injected it): forget it, and forget what EHLO said in clear.
    rbuf_.clear();
    caps_ = server_capabilities{};

    ssl::context& ctx = required ? *client_.verifying_context_ : *client_.opportunistic_context_;
    tls_.emplace(socket_, ctx);
    SSL* ssl_handle = tls_->native_handle();
    if (!hop_.host_is_ip && SSL_set_tlsext_host_name(ssl_handle, hop_.host.c_str()) != 1) {
      fail_local(smtp_client_errc::tls_failed, "4.7.5 cannot set the TLS server name for " + remote_);
      co_return false;
    }
    if (required) {
      // Chain verification comes from the context; the name check is per connection: the leaf
      // certificate must name the configured host (IP literal: an iPAddress SAN), no partial wildcards.
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      const int ok = hop_.host_is_ip
                         ? X509_VERIFY_PARAM_set1_ip_asc(param, hop_.host.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, hop_.host.c_str(), hop_.host.size());
      if (ok != 1) {
        fail_local(smtp_client_errc::tls_failed,
                   "4.7.5 cannot set up certificate name checks for " + remote_);
        co_return false;
      }
    }
    auto handshake = co_await await_with_deadline(
        tls_->async_handshake(ssl::stream_base::client, asio::as_tuple(asio::use_awaitable)),
        opts_.starttls_timeout, [this] { close_socket(); });
    if (!handshake) {
      check_cancelled(handshake.error());
      tls_failed_ = true;
      fail_local(handshake.error(), "4.7.5 TLS handshake with " + remote_ + " timed out");
      co_return false;
    }
    if (auto [ec] = *handshake; ec) {
      tls_failed_ = true;
      fail_local(smtp_client_errc::tls_failed,
                 "4.7.5 TLS handshake with " + remote_ + " failed: " + tls_error_text(ssl_handle, ec));
      co_return false;
    }
    result_.tls = true;
    result_.tls_details = std::string(SSL_get_version(ssl_handle)) + " " + SSL_get_cipher_name(ssl_handle);
    const bool greeted_again = co_await hello();
    co_return greeted_again;
  }

  asio::awaitable<void> transaction() {
    const spool_envelope& env = message_.envelope;

    // Checks that need no round trip, made before MAIL so that a doomed message is not sent.
    if (!sendable_address(env.mail_from)) {
      resolve_all_open_local(rcpt_status::permanent,
                             "5.1.7 the sender address contains bytes that cannot be sent");
      co_return;
    }
    bool addresses_need_utf8 = has_8bit(env.mail_from);
    for (auto& s : slots_) {
      if (s.index >= env.recipients.size() || !sendable_address(env.recipients[s.index].address)) {
        resolve_local(s, rcpt_status::permanent,
                      "5.1.3 the recipient address contains bytes that cannot be sent");
        continue;
      }
      addresses_need_utf8 = addresses_need_utf8 || has_8bit(env.recipients[s.index].address);
    }
    if (addresses_need_utf8 && !caps_.smtputf8) {
      resolve_all_open_local(rcpt_status::permanent,
                             "5.6.7 SMTPUTF8 is required, but was not offered by " + remote_);
      co_return;
    }
    const std::uint64_t size = smtp_data_encoder::normalised_size(message_.body);
    if (caps_.size_limit != 0 && size > caps_.size_limit) {
      resolve_all_open_local(rcpt_status::permanent, "5.3.4 message size " + std::to_string(size) +
                                                         " exceeds size limit " +
                                                         std::to_string(caps_.size_limit) + " of " + remote_);
      co_return;
    }

    const bool use_bdat = caps_.chunking && opts_.use_chunking;
    std::vector<command> commands;
    {
      std::string mail = "MAIL FROM:<" + env.mail_from + ">";
      if (caps_.size) mail += " SIZE=" + std::to_string(size);
      if (caps_.eightbitmime && has_8bit(message_.body)) mail += " BODY=8BITMIME";
      if (caps_.smtputf8 && (env.smtputf8 || addresses_need_utf8)) mail += " SMTPUTF8";
      if (caps_.dsn) {
        if (env.ret == spool_dsn_ret::full) mail += " RET=FULL";
        if (env.ret == spool_dsn_ret::headers) mail += " RET=HDRS";
        if (valid_xtext(env.envid, 100)) mail += " ENVID=" + env.envid;
      }
      commands.push_back({command_kind::mail, mail + "\r\n"});
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state != slot_state::open) continue;
      const spool_recipient& r = env.recipients[slots_[i].index];
      std::string rcpt = "RCPT TO:<" + r.address + ">";
      if (caps_.dsn) {
        if (valid_notify(r.notify)) rcpt += " NOTIFY=" + r.notify;
        if (valid_orcpt(r.orcpt)) rcpt += " ORCPT=" + r.orcpt;
      }
      commands.push_back({command_kind::rcpt, rcpt + "\r\n", i});
    }
    if (commands.size() == 1) co_return;  // no recipient left to send to
    if (!use_bdat) commands.push_back({command_kind::data, "DATA\r\n"});

    const bool pipelined = caps_.pipelining && opts_.use_pipelining;
    const std::size_t batch = pipelined ? std::max<std::size_t>(1, opts_.max_pipelined_commands) : 1;
    bool mail_ok = false;
    bool data_go = false;
    for (std::size_t pos = 0; pos < commands.size();) {
      if (pos > 0 && !mail_ok) break;  // MAIL refused: send nothing more
      if (!pipelined && commands[pos].kind == command_kind::data && !any_accepted()) break;
      const std::size_t end = std::min(commands.size(), pos + batch);
      std::string wire;
      for (std::size_t i = pos; i < end; ++i) wire += commands[i].line;
      const bool batch_sent = co_await write_all(wire, opts_.mail_timeout, "while sending MAIL FROM/RCPT TO");
      if (!batch_sent) co_return;

      for (std::size_t i = pos; i < end; ++i) {
        const command& cmd = commands[i];
        switch (cmd.kind) {
          case command_kind::mail: {
            auto reply = co_await read_reply(opts_.mail_timeout, "after MAIL FROM");
            if (!reply) co_return;
            mail_ok = reply->kind() == 2;
            if (!mail_ok) {
              resolve_all_open(*reply);
              if (reply->code == 421) {
                fail_with_reply(smtp_client_errc::service_closing, *reply);
                co_return;
              }
            }
            break;
          }
          case command_kind::rcpt: {
            auto reply = co_await read_reply(opts_.rcpt_timeout, "after RCPT TO");
            if (!reply) co_return;
            if (!mail_ok) break;  // the 503 that follows a refused MAIL in a pipelined batch
            slot& s = slots_[cmd.slot];
            if (reply->kind() == 2) {
              s.state = slot_state::accepted;
            } else {
              resolve(s, *reply);
            }
            if (reply->code == 421) {
              fail_with_reply(smtp_client_errc::service_closing, *reply);
              co_return;
            }
            break;
          }
          case command_kind::data: {
            auto reply = co_await read_reply(opts_.data_init_timeout, "after DATA");
            if (!reply) co_return;
            if (reply->code == 354) {
              if (mail_ok && any_accepted()) {
                data_go = true;
              } else {
                // Pipelined DATA although nothing was accepted, and the server said 354 anyway:
                // end an empty message (RFC 2920 3.1) and read its (expected) refusal.
                const bool dot_sent =
                    co_await write_all(".\r\n", opts_.data_block_timeout, "while ending an empty DATA");
                if (!dot_sent) co_return;
                const auto refusal =
                    co_await read_reply(opts_.data_done_timeout, "after end of an empty DATA");
                if (!refusal) co_return;
              }
            } else if (mail_ok) {
              if (reply->kind() == 4 || reply->kind() == 5) resolve_accepted(*reply);
              if (reply->code == 421 || reply->kind() == 2 || reply->kind() == 3) {
                // 421 ends the session; a 2xx/3xx other than 354 leaves us not knowing the server's
                // state: the accepted recipients stay temporary.
                fail_with_reply(reply->code == 421 ? smtp_client_errc::service_closing
                                                   : smtp_client_errc::unexpected_reply,
                                *reply);
                co_return;
              }
            }
            break;
          }
        }
      }
      pos = end;
    }
    if (!mail_ok || !any_accepted()) co_return;
    if (use_bdat) {
      co_await send_bdat();
    } else if (data_go) {
      co_await send_data();
    }
  }

  // Each chunk goes out in one gather write: the part the encoder leaves unchanged straight from the
  // message, then what it had to change (stuffed dots, normalised line ends) and the terminator.
  asio::awaitable<void> send_data() {
    smtp_data_encoder encoder(smtp_data_encoder::mode::data);
    const std::string_view body = message_.body;
    const std::size_t chunk = std::max<std::size_t>(1, opts_.data_chunk_size);
    std::string wire;
    std::size_t offset = 0;
    bool last = false;
    while (!last) {
      const std::string_view slice = body.substr(offset, chunk);
      offset += slice.size();
      last = offset >= body.size();
      const std::size_t verbatim = encoder.take_verbatim(slice);
      wire.clear();
      encoder.encode(slice.substr(verbatim), wire);
      if (last) encoder.finish(wire);
      // (A named array: GCC 12 rejects a braced list inside a co_await expression.)
      const std::array<std::string_view, 2> pieces{slice.substr(0, verbatim), wire};
      const bool block_sent =
          co_await write_all(pieces, opts_.data_block_timeout, "while sending the message body");
      if (!block_sent) co_return;
    }
    auto reply = co_await read_reply(opts_.data_done_timeout, "after end of data");
    if (!reply) co_return;
    resolve_accepted(*reply);
    if (reply->code == 421) fail_with_reply(smtp_client_errc::service_closing, *reply);
  }

  asio::awaitable<void> send_bdat() {
    smtp_data_encoder encoder(smtp_data_encoder::mode::bdat);
    const std::string_view body = message_.body;
    const std::size_t chunk = std::max<std::size_t>(1, opts_.bdat_chunk_size);
    std::string payload;
    std::size_t offset = 0;
    bool last = false;
    while (!last) {
      const std::string_view slice = body.substr(offset, chunk);
      offset += slice.size();
      last = offset >= body.size();
      const std::size_t verbatim = encoder.take_verbatim(slice);
      payload.clear();
      encoder.encode(slice.substr(verbatim), payload);
      if (last) encoder.finish(payload);
      // The command and its chunk in one gather write (RFC 3030 lets the client send them together).
      const std::string cmd =
          "BDAT " + std::to_string(verbatim + payload.size()) + (last ? " LAST\r\n" : "\r\n");
      const std::array<std::string_view, 3> pieces{cmd, slice.substr(0, verbatim), payload};
      const bool chunk_sent =
          co_await write_all(pieces, opts_.data_block_timeout, "while sending BDAT and its chunk");
      if (!chunk_sent) co_return;
      auto reply =
          co_await read_reply(last ? opts_.data_done_timeout : opts_.data_block_timeout, "after BDAT");
      if (!reply) co_return;
      if (last || reply->kind() != 2) {
        resolve_accepted(*reply);
        if (reply->code == 421) fail_with_reply(smtp_client_errc::service_closing, *reply);
        co_return;
      }
    }
  }

  // Best effort: the results are settled; a QUIT that fails changes nothing.
  asio::awaitable<void> quit() {
    if (!socket_.is_open()) co_return;
    quitting_ = true;
    const bool quit_sent = co_await write_all("QUIT\r\n", opts_.quit_timeout, "while sending QUIT");
    if (quit_sent) {
      const auto goodbye = co_await read_reply(opts_.quit_timeout, "after QUIT");
      (void)goodbye;
    }
    close_socket();
  }

  // ---- I/O with deadlines -----------------------------------------------------------------------

  void close_socket() noexcept {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  // Cancellation of the caller is not a delivery failure: propagate it.
  static void check_cancelled(const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) throw boost::system::system_error(ec);
  }

  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer b) {
    if (tls_) return tls_->async_read_some(b, asio::as_tuple(asio::use_awaitable));
    return socket_.async_read_some(b, asio::as_tuple(asio::use_awaitable));
  }

  // Up to three pieces written in order as one (gather) write; empty pieces are allowed.
  using write_pieces = std::array<asio::const_buffer, 3>;

  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_some_all(write_pieces data) {
    if (tls_) return asio::async_write(*tls_, data, asio::as_tuple(asio::use_awaitable));
    return asio::async_write(socket_, data, asio::as_tuple(asio::use_awaitable));
  }

  // Not coroutines themselves: the pieces are copied into write_pieces_all's frame right here.
  asio::awaitable<bool> write_all(std::span<const std::string_view> pieces, duration timeout,
                                  std::string_view stage) {
    write_pieces data{};
    if (pieces.size() > data.size()) std::abort();  // a programming error, never input
    std::size_t i = 0;
    for (const std::string_view p : pieces) data[i++] = asio::buffer(p);
    return write_pieces_all(data, timeout, stage);
  }

  asio::awaitable<bool> write_all(std::string_view data, duration timeout, std::string_view stage) {
    return write_pieces_all({asio::buffer(data)}, timeout, stage);
  }

  asio::awaitable<bool> write_pieces_all(write_pieces data, duration timeout, std::string_view stage) {
    if (!socket_.is_open()) {
      fail_io(smtp_client_errc::connection_closed, stage);
      co_return false;
    }
    auto written = co_await await_with_deadline(write_some_all(data), timeout, [this] { close_socket(); });
    if (!written) {
      check_cancelled(written.error());
      fail_io(written.error(), stage);
      co_return false;
    }
    if (auto [ec, n] = *written; ec) {
      fail_io(ec, stage);
      co_return false;
    }
    co_return true;
  }

  // Reads one complete reply without a deadline (read_reply adds it). Bounded by max_reply_line and
  // max_reply_lines.
  asio::awaitable<boost::system::result<smtp_reply, std::error_code>> read_reply_unbounded_in_time() {
    smtp_reply reply;
    for (;;) {
      const auto nl = rbuf_.find('\n');
      if (nl == std::string::npos) {
        if (rbuf_.size() >= opts_.max_reply_line) co_return make_error_code(smtp_client_errc::reply_too_long);
        auto [ec, n] = co_await read_some(asio::buffer(read_chunk_));
        if (ec) {
          if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
            co_return make_error_code(smtp_client_errc::connection_closed);
          }
          co_return std::error_code(ec);
        }
        rbuf_.append(read_chunk_.data(), n);
        continue;
      }
      if (nl + 1 > opts_.max_reply_line) co_return make_error_code(smtp_client_errc::reply_too_long);
      std::string_view line(rbuf_.data(), nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      const bool digits = line.size() >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
                          line[1] <= '9' && line[2] >= '0' && line[2] <= '9';
      if (!digits || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
        co_return make_error_code(smtp_client_errc::malformed_reply);
      }
      const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
      if (reply.lines.empty()) {
        reply.code = code;
      } else if (code != reply.code) {
        co_return make_error_code(smtp_client_errc::malformed_reply);
      }
      const bool more = line.size() > 3 && line[3] == '-';
      reply.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view{});
      rbuf_.erase(0, nl + 1);
      if (!more) co_return reply;
      if (reply.lines.size() >= opts_.max_reply_lines) {
        co_return make_error_code(smtp_client_errc::too_many_reply_lines);
      }
    }
  }

  asio::awaitable<std::optional<smtp_reply>> read_reply(duration timeout, std::string_view stage) {
    if (!socket_.is_open()) {
      fail_io(smtp_client_errc::connection_closed, stage);
      co_return std::nullopt;
    }
    auto r =
        co_await await_with_deadline(read_reply_unbounded_in_time(), timeout, [this] { close_socket(); });
    if (!r) {
      check_cancelled(r.error());
      fail_io(r.error(), stage);
      co_return std::nullopt;
    }
    if (!*r) {
      fail_io(r->error(), stage);
      co_return std::nullopt;
    }
    co_return std::move(**r);
  }

  // ---- results ----------------------------------------------------------------------------------

  bool any_accepted() const noexcept {
    return std::any_of(slots_.begin(), slots_.end(),
                       [](const slot& s) { return s.state == slot_state::accepted; });
  }

  static rcpt_status status_of(const smtp_reply& r) noexcept {
    switch (r.kind()) {
      case 2:
        return rcpt_status::delivered;
      case 5:
        return rcpt_status::permanent;
      default:
        return rcpt_status::temporary;
    }
  }

  void resolve(slot& s, const smtp_reply& r) {
    s.state = slot_state::final;
    s.status = status_of(r);
    s.reply = r.text();
    s.remote = remote_;
  }
  void resolve_local(slot& s, rcpt_status status, const std::string& text) {
    s.state = slot_state::final;
    s.status = status;
    s.reply = bounded(text);
    s.remote.clear();
  }
  void resolve_all_open(const smtp_reply& r) {
    for (auto& s : slots_) {
      if (s.state == slot_state::open) resolve(s, r);
    }
  }
  void resolve_all_open_local(rcpt_status status, const std::string& text) {
    for (auto& s : slots_) {
      if (s.state == slot_state::open) resolve_local(s, status, text);
    }
  }
  // The reply after the message data applies to every recipient accepted at RCPT.
  void resolve_accepted(const smtp_reply& r) {
    for (auto& s : slots_) {
      if (s.state == slot_state::accepted) resolve(s, r);
    }
  }

  // The session ended early. The first failure is the one reported; unresolved recipients get it.
  void fail_local(std::error_code ec, std::string text) {
    if (quitting_ || result_.error) return;
    result_.error = ec;
    result_.error_text = bounded(std::move(text));
  }
  void fail_with_reply(smtp_client_errc e, const smtp_reply& r) {
    // 421: the server is closing the channel (RFC 5321 3.8); no QUIT, nothing more is read.
    if (e == smtp_client_errc::service_closing) close_socket();
    if (quitting_ || result_.error) return;
    result_.error = make_error_code(e);
    result_.error_text = r.text();
    failure_reply_ = r.text();
  }
  void fail_io(std::error_code ec, std::string_view stage) {
    close_socket();  // a connection that broke, stalled or sent garbage is not used again, QUIT included
    if (quitting_ || result_.error) return;
    std::string text;
    if (ec == std::error_code(boost::system::error_code(asio::error::timed_out))) {
      text = "4.4.2 conversation with " + remote_ + " timed out " + std::string(stage);
    } else if (ec == smtp_client_errc::connection_closed) {
      text = "4.4.2 lost connection with " + remote_ + " " + std::string(stage);
    } else if (ec == smtp_client_errc::reply_too_long || ec == smtp_client_errc::too_many_reply_lines ||
               ec == smtp_client_errc::malformed_reply) {
      text = "4.5.0 protocol error with " + remote_ + " " + std::string(stage) + ": " + ec.message();
    } else {
      text = "4.4.2 error with " + remote_ + " " + std::string(stage) + ": " + ec.message();
    }
    fail_local(ec, std::move(text));
  }

  delivery_attempt_result finish() {
    result_.recipients.reserve(slots_.size());
    for (auto& s : slots_) {
      recipient_result r;
      r.index = s.index;
      if (s.state == slot_state::final) {
        r.status = s.status;
        r.reply = std::move(s.reply);
        r.remote = std::move(s.remote);
      } else {
        r.status = rcpt_status::temporary;
        if (!failure_reply_.empty()) {
          r.reply = failure_reply_;
          r.remote = remote_;
        } else {
          r.reply = result_.error_text.empty() ? "4.4.0 no final reply from " + remote_ : result_.error_text;
        }
      }
      result_.recipients.push_back(std::move(r));
    }
    return std::move(result_);
  }

 public:
  [[nodiscard]] bool tls_handshake_failed() const noexcept { return tls_failed_; }

 private:
  const smtp_client& client_;
  const smtp_client_options& opts_;
  const smtp_hop& hop_;
  const outgoing_message& message_;
  bool allow_tls_;
  tcp::socket socket_;
  std::optional<ssl::stream<tcp::socket&>> tls_;  // destroyed before socket_ (declared after it)
  std::string remote_;
  std::string rbuf_;  // received bytes not yet consumed (< max_reply_line + 4 KiB)
  std::array<char, 4096> read_chunk_{};
  server_capabilities caps_;
  std::vector<slot> slots_;
  delivery_attempt_result result_;
  std::string failure_reply_;  // the server's reply that ended the session, if one did
  bool quitting_ = false;
  bool tls_failed_ = false;
};

smtp_client::smtp_client(smtp_client_options options) : options_(std::move(options)) {
  auto make_context = [this](bool verify) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) {
      throw std::runtime_error("delivery TLS: cannot require TLS 1.2 or later");
    }
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    boost::system::error_code ec;
    if (verify) {
      ctx->set_verify_mode(ssl::verify_peer, ec);
      if (!ec) {
        if (options_.ca_file.empty()) {
          ctx->set_default_verify_paths(ec);
        } else {
          ctx->load_verify_file(options_.ca_file, ec);
        }
      }
      if (ec) {
        throw std::runtime_error("delivery TLS: cannot load CA certificates" +
                                 (options_.ca_file.empty() ? std::string() : " from " + options_.ca_file) +
                                 ": " + ec.message());
      }
    } else {
      // Opportunistic: encryption against passive eavesdropping, no authentication (RFC 7435).
      ctx->set_verify_mode(ssl::verify_none, ec);
      if (ec) throw std::runtime_error("delivery TLS: " + ec.message());
    }
    return ctx;
  };
  verifying_context_ = make_context(true);
  opportunistic_context_ = make_context(false);
}

smtp_client::~smtp_client() = default;

asio::awaitable<delivery_attempt_result> smtp_client::send(const smtp_hop& hop,
                                                           const outgoing_message& message) const {
  const auto ex = co_await asio::this_coro::executor;
  delivery_attempt_result first;
  bool fall_back = false;
  {
    smtp_client_session session(*this, hop, message, true, ex);
    auto result = co_await session.run();
    first = std::move(result);
    fall_back = session.tls_handshake_failed() && hop.starttls == starttls_mode::opportunistic &&
                options_.opportunistic_plaintext_fallback;
  }
  if (!fall_back) co_return first;
  // The handshake failed before MAIL, so no recipient has a result yet: try once more in clear.
  smtp_client_session session(*this, hop, message, false, ex);
  auto second = co_await session.run();
  if (second.error) second.error_text = bounded(second.error_text + " (after: " + first.error_text + ")");
  co_return second;
}

}  // namespace mukai::server
