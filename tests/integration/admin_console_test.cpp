// The web console end to end (issue 4 "Tests"): the real `mukai serve` with an admin listener and
// users whose hashes `mukai passwd --stdin` made, a Maildir as the receiving side, two messages sent
// through SMTP (a PDF invoice, and one whose Subject and attachment filename carry <script> and
// <img onerror>), then real headless Chromium (tests/browser/console_test.mjs): the operator logs
// in, searches, opens and releases the PDF message; the hostile message renders as text; a viewer
// has no buttons and gets 403; a POST without the CSRF token is refused. Afterwards: the original,
// byte for byte as sent, arrives in the Maildir, and the audit log holds the logins and the release.
// Also: SIGHUP with changed [admin] users restarts the console with them (python3 logs in over
// HTTPS before and after), and a reload whose [admin] cannot start keeps the running console.
// Skipped (77) when Chromium or Node.js is missing; tests/browser/node_modules is installed with
// `npm ci` from the committed package-lock.json when absent.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/mukai_instance.hpp"
#include "tests/support/process.hpp"
#include "tests/support/sample_messages.hpp"
#include "tests/support/smtp_send.hpp"
#include "tests/support/temp_dir.hpp"

namespace {

using namespace mukai::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

const fs::path browser_dir = fs::path(MUKAI_TEST_DATA_DIR).parent_path() / "browser";

// "%PDF-1.4 ... %%EOF": libmagic calls it application/pdf.
const std::string pdf_b64 = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKJSVFT0YK";

std::string message(const std::string& subject, const std::string& filename, const std::string& message_id) {
  return "From: =?UTF-8?B?55yM5bqB?= <notice@pref.example.jp>\r\n"
         "To: kikaku@city.example.lg.jp\r\n"
         "Subject: " + subject + "\r\n"
         "Message-ID: <" + message_id + ">\r\n"
         "Date: Sun, 22 Nov 2026 10:00:00 +0900\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
         "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the invoice attached.\r\n"
         "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"" + filename +
         "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + pdf_b64 + "\r\n--b--\r\n";
}

std::string password_hash(const std::string& password) {
  const auto r = run_command({"/bin/sh", "-c", "printf '%s\\n' \"$PW\" | \"$MUKAI\" passwd --stdin"}, 60s,
                             {"PW=" + password, std::string("MUKAI=") + MUKAI_BINARY});
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  std::string h = r.output;
  while (!h.empty() && (h.back() == '\n' || h.back() == '\r')) h.pop_back();
  REQUIRE(h.starts_with("$scrypt$"));
  return h;
}

std::vector<std::string> maildir_messages(const fs::path& maildir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(maildir / "new", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    out.push_back(read_file_or_empty(it->path()));
  return out;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return cond();
}

std::string lf(std::string s) {
  std::string out;
  for (char c : s)
    if (c != '\r') out += c;
  return out;
}

// True when one line of the audit log contains every piece.
bool audit_has(const fs::path& file, std::initializer_list<std::string_view> pieces) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    bool all = true;
    for (auto p : pieces) all = all && line.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

// CI installs Chromium and Node.js (packaging/install-deps): there a missing one is a failure, not
// a skip, so the browser test can never silently stop running.
void skip(const std::string& why) {
  const char* ci = std::getenv("CI");
  if (ci && std::string_view(ci) == "true") FAIL("CI=true but " << why);
  std::fprintf(stderr, "skipped: %s\n", why.c_str());
  std::exit(77);
}

// POST /api/v1/login over HTTPS (python3's urllib, the certificate not checked: self-signed);
// returns the HTTP status, or 0 when no answer came.
int api_login(std::uint16_t port, const std::string& user, const std::string& password) {
  static const char* script =
      "import json, ssl, sys, urllib.request, urllib.error\n"
      "req = urllib.request.Request(sys.argv[1], data=json.dumps({'user': sys.argv[2], 'password': sys.argv[3]}).encode(),"
      " headers={'Content-Type': 'application/json'})\n"
      "try:\n  print(urllib.request.urlopen(req, context=ssl._create_unverified_context(), timeout=20).status)\n"
      "except urllib.error.HTTPError as e:\n  print(e.code)\n";
  const auto r = run_command({"python3", "-c", script, "https://127.0.0.1:" + std::to_string(port) + "/api/v1/login",
                              user, password},
                             60s);
  return r.exit_code == 0 ? std::atoi(r.output.c_str()) : 0;
}

std::string admin_section(std::uint16_t port, const std::string& user, const std::string& hash) {
  return "[admin]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n[[admin.users]]\nname = \"" + user +
         "\"\nrole = \"operator\"\npassword_hash = \"" + hash + "\"\n";
}

}  // namespace

TEST_CASE("SIGHUP with changed [admin] users: the console restarts with them, the relay keeps running") {
  temp_dir tmp("mukai-console-reload");
  const std::uint16_t admin_port = free_loopback_port();
  const std::string first_pw = "first-" + std::to_string(::getpid());
  const std::string second_pw = "second-" + std::to_string(::getpid());
  mukai_options o;
  o.dir = tmp.path() / "mukai";
  o.next_hops = {"maildir:" + (o.dir / "outbox").string()};
  o.workers = 1;
  o.extra_sections = admin_section(admin_port, "suzuki", password_hash(first_pw));
  mukai_instance mukai(o);
  mukai.start();
  REQUIRE_MESSAGE(wait_for_listen(admin_port, 30s, mukai.pid()), mukai.log_text());
  CHECK(api_login(admin_port, "suzuki", first_pw) == 200);
  CHECK(api_login(admin_port, "tanaka", second_pw) == 401);

  mukai.set_extra_sections(admin_section(admin_port, "tanaka", password_hash(second_pw)));
  mukai.reload();
  REQUIRE_MESSAGE(wait_for([&] { return mukai.log_text().find("admin console restarted") != std::string::npos; }, 30s),
                  mukai.log_text());
  REQUIRE_MESSAGE(wait_for_listen(admin_port, 30s, mukai.pid()), mukai.log_text());
  CHECK(api_login(admin_port, "tanaka", second_pw) == 200);
  CHECK(api_login(admin_port, "suzuki", first_pw) == 401);
  CHECK(is_listening(mukai.port(), mukai.pid()));  // the same process still relays

  // A reload whose [admin] cannot start (its port taken by the relay's own SMTP listener): the
  // console keeps the settings it runs with.
  mukai.set_extra_sections(admin_section(mukai.port(), "tanaka", password_hash(second_pw)));
  mukai.reload();
  REQUIRE_MESSAGE(wait_for([&] { return mukai.log_text().find("cannot start") != std::string::npos; }, 30s),
                  mukai.log_text());
  REQUIRE_MESSAGE(wait_for_listen(admin_port, 30s, mukai.pid()), mukai.log_text());
  CHECK(api_login(admin_port, "tanaka", second_pw) == 200);
  CHECK(mukai.stop() == 0);
}

TEST_CASE("web console in headless Chromium: search, detail, release, hostile strings, viewer, CSRF") {
  const fs::path chromium = find_program("chromium");
  const fs::path node = find_program("node");
  if (chromium.empty()) skip("no chromium (Debian package chromium)");
  if (node.empty()) skip("no node (Debian package nodejs)");
  if (!fs::exists(browser_dir / "node_modules" / "playwright-core" / "package.json")) {
    const fs::path npm = find_program("npm");
    if (npm.empty()) skip("no npm to install playwright-core");
    const auto r = run_command({"/bin/sh", "-c", "cd \"$DIR\" && npm ci --no-audit --no-fund"}, 300s,
                               {"DIR=" + browser_dir.string()});
    REQUIRE_MESSAGE(r.exit_code == 0, "npm ci in tests/browser failed:\n" << r.output);
  }

  temp_dir tmp("mukai-console");
  const std::string op_pw = "operator-" + std::to_string(::getpid()) + "-パス";
  const std::string viewer_pw = "viewer pass " + std::to_string(::getpid());
  const std::uint16_t admin_port = free_loopback_port();
  mukai_options o;
  o.dir = tmp.path() / "mukai";
  // Inside mukai's directory: as root the test hands that over to the user mukai drops to.
  const fs::path outbox = o.dir / "outbox";
  o.next_hops = {"maildir:" + outbox.string()};
  o.extra_sections = "[admin]\nlisten = \"127.0.0.1:" + std::to_string(admin_port) +
                     "\"\nsession_lifetime = \"1h\"\n"
                     "[[admin.users]]\nname = \"yamada\"\nrole = \"operator\"\npassword_hash = \"" +
                     password_hash(op_pw) +
                     "\"\n[[admin.users]]\nname = \"sato\"\nrole = \"viewer\"\npassword_hash = \"" +
                     password_hash(viewer_pw) + "\"\n";
  mukai_instance mukai(o);
  {
    const auto check = run_command({MUKAI_BINARY, "check-config", "--config", mukai.config_path().string()}, 60s);
    REQUIRE_MESSAGE(check.exit_code == 0, check.output);
  }
  mukai.start();
  REQUIRE_MESSAGE(wait_for_listen(admin_port, 30s, mukai.pid()), mukai.log_text());
  CHECK(mukai.log_text().find("SHA-256 fingerprint") != std::string::npos);
  const fs::path key = mukai.quarantine_dir().parent_path() / "admin-tls" / "key.pem";
  REQUIRE(fs::exists(key));
  CHECK((fs::status(key).permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);

  const std::string token = std::to_string(::getpid()) + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
  const std::string pdf_token = "inv" + token;
  const std::string hostile_token = "hostile" + token;
  const std::string original =
      message("=?UTF-8?B?6KuL5rGC5pu444Gu6YCB5LuY?= " + pdf_token, "請求書.pdf", pdf_token + "@pref.example.jp");
  const std::string hostile = message("<script>alert('subject')</script> <img src=x onerror=alert(1)> " + hostile_token,
                                      "<img src=x onerror=alert(2)><script>alert(3)</script>.pdf",
                                      hostile_token + "@pref.example.jp");
  const std::string sealed_token = "sealed" + token;
  const std::string sealed = mukai::test::pgp_encrypted_message(sealed_token);  // held whole
  for (const auto* m : {&original, &hostile, &sealed}) {
    const auto r = smtp_send("127.0.0.1", mukai.port(), "notice@pref.example.jp", {"kikaku@example.lg.jp"}, *m);
    REQUIRE_MESSAGE(r.ok, r.last_reply << r.error);
  }
  // Both sanitized copies and the hold notice delivered: their quarantine records were written before.
  REQUIRE_MESSAGE(wait_for([&] { return maildir_messages(outbox).size() >= 3; }, 60s), mukai.log_text());

  const auto r = run_command({node.string(), (browser_dir / "console_test.mjs").string()}, 300s,
                             {"MUKAI_URL=https://127.0.0.1:" + std::to_string(admin_port),
                              "MUKAI_OPERATOR=yamada", "MUKAI_OPERATOR_PASSWORD=" + op_pw, "MUKAI_VIEWER=sato",
                              "MUKAI_VIEWER_PASSWORD=" + viewer_pw, "MUKAI_PDF_TOKEN=" + pdf_token,
                              "MUKAI_HOSTILE_TOKEN=" + hostile_token, "MUKAI_SEALED_TOKEN=" + sealed_token,
                              "MUKAI_SCREENSHOT_DIR=" + fs::current_path().string(), "CHROMIUM=" + chromium.string()});
  MESSAGE("browser test output:\n" << r.output);
  REQUIRE_MESSAGE(r.exit_code == 0, "the browser checks failed; mukai log:\n" << mukai.log_text());
  CHECK(fs::exists(fs::current_path() / "admin-console-list.png"));
  CHECK(fs::exists(fs::current_path() / "admin-console-detail.png"));

  // The released original reaches the receiving side byte for byte (after the Received: header the
  // relay prepended when it accepted the message), with the PDF still inside.
  std::string delivered;
  REQUIRE_MESSAGE(wait_for(
                      [&] {
                        for (const auto& m : maildir_messages(outbox))
                          if (m.find(pdf_b64) != std::string::npos) delivered = m;
                        return !delivered.empty();
                      },
                      60s),
                  mukai.log_text());
  CHECK(lf(delivered).ends_with(lf(original)));
  CHECK(delivered.find("Message-ID: <" + pdf_token + "@pref.example.jp>") != std::string::npos);

  const fs::path audit = mukai.quarantine_dir() / "audit.log";
  CHECK(audit_has(audit, {"\"web:yamada\"", "\"login\"", "\"ok\"", "\"127.0.0.1\""}));
  CHECK(audit_has(audit, {"\"web:yamada\"", "\"login\"", "\"failed\""}));  // the wrong password first
  CHECK(audit_has(audit, {"\"web:yamada\"", "\"release\"", "\"ok\""}));
  CHECK(audit_has(audit, {"\"web:yamada\"", "\"release\"", "\"refused\"", "held whole"}));
  CHECK(audit_has(audit, {"\"web:yamada\"", "\"release\"", "\"ok\"", "unverified=confirmed"}));
  CHECK(audit_has(audit, {"\"web:yamada\"", "\"csrf\"", "\"denied\""}));   // the POST without token
  CHECK(audit_has(audit, {"\"web:sato\"", "\"release\"", "\"denied\""}));  // the viewer's forced POST
  CHECK(audit_has(audit, {"\"web:sato\"", "\"logout\"", "\"ok\""}));
  CHECK(mukai.stop() == 0);
}
