// next_hop: the accepted forms (host names, IPv4, bracketed IPv6, ports, starttls modes, maildir paths,
// canonical text) and the strict refusals, each with a message that names the problem.
#include "server/next_hop.hpp"

#include <doctest/doctest.h>

using namespace mukai::server;

namespace {

smtp_hop smtp(std::string_view text) {
  auto r = parse_next_hop(text);
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? std::string() : to_string(r.error())));
  REQUIRE(std::holds_alternative<smtp_hop>(r->target));
  return std::get<smtp_hop>(r->target);
}

std::string error_of(std::string_view text) {
  auto r = parse_next_hop(text);
  REQUIRE_MESSAGE(!r.has_value(), text);
  return r.error().message;
}

}  // namespace

TEST_CASE("smtp:// with a host name, IPv4 and IPv6 literals, ports and defaults") {
  auto h = smtp("smtp://127.0.0.1:2526");
  CHECK(h.host == "127.0.0.1");
  CHECK(h.port == 2526);
  CHECK(h.host_is_ip);
  CHECK(h.starttls == starttls_mode::opportunistic);

  h = smtp("smtp://[::1]:2526");
  CHECK(h.host == "::1");
  CHECK(h.port == 2526);
  CHECK(h.host_is_ip);

  h = smtp("smtp://[2001:DB8::25]");
  CHECK(h.host == "2001:db8::25");
  CHECK(h.port == 25);

  h = smtp("SMTP://Mail.Example.LG.JP");
  CHECK(h.host == "mail.example.lg.jp");
  CHECK(h.port == 25);
  CHECK_FALSE(h.host_is_ip);

  h = smtp("smtp://mx.example.:587");
  CHECK(h.host == "mx.example");
  CHECK(h.port == 587);

  CHECK(smtp("smtp://localhost:65535").port == 65535);
  CHECK(smtp("smtp://a-b.c1:1").host == "a-b.c1");
}

TEST_CASE("starttls= modes") {
  CHECK(smtp("smtp://h:25?starttls=required").starttls == starttls_mode::required);
  CHECK(smtp("smtp://h:25?starttls=opportunistic").starttls == starttls_mode::opportunistic);
  CHECK(smtp("smtp://h:25?starttls=off").starttls == starttls_mode::off);
  CHECK(smtp("smtp://[::1]:2526?starttls=required").starttls == starttls_mode::required);
  CHECK(smtp("smtp://h?starttls=off").port == 25);
}

TEST_CASE("maildir: absolute and relative paths") {
  auto r = parse_next_hop("maildir:/var/spool/mukai/outbox");
  REQUIRE(r.has_value());
  CHECK(std::get<maildir_hop>(r->target).dir == "/var/spool/mukai/outbox");
  r = parse_next_hop("maildir:./mukai-data/outbox");
  REQUIRE(r.has_value());
  CHECK(std::get<maildir_hop>(r->target).dir == "./mukai-data/outbox");
  r = parse_next_hop("maildir:outbox");
  REQUIRE(r.has_value());
  CHECK(std::get<maildir_hop>(r->target).dir == "outbox");
}

TEST_CASE("canonical text") {
  CHECK(to_string(*parse_next_hop("smtp://[::1]:2526?starttls=required")) ==
        "smtp://[::1]:2526?starttls=required");
  CHECK(to_string(*parse_next_hop("SMTP://Host.Example")) == "smtp://host.example:25");
  CHECK(to_string(*parse_next_hop("smtp://h:1?starttls=opportunistic")) == "smtp://h:1");
  CHECK(to_string(*parse_next_hop("maildir:/x/y")) == "maildir:/x/y");
}

TEST_CASE("strict refusals with a reason") {
  CHECK(error_of("").find("empty") != std::string::npos);
  CHECK(error_of(" smtp://h:25").find("white space") != std::string::npos);
  CHECK(error_of("smtp://h:25 ").find("white space") != std::string::npos);
  CHECK(error_of("smtp://").find("host is missing") != std::string::npos);
  CHECK(error_of("smtp://:25").find("host is missing") != std::string::npos);
  CHECK(error_of("smtp://h:").find("port") != std::string::npos);
  CHECK(error_of("smtp://h:0").find("1 to 65535") != std::string::npos);
  CHECK(error_of("smtp://h:65536").find("1 to 65535") != std::string::npos);
  CHECK(error_of("smtp://h:+25").find("1 to 65535") != std::string::npos);
  CHECK(error_of("smtp://h:123456").find("1 to 65535") != std::string::npos);
  CHECK(error_of("smtp://h:2x").find("1 to 65535") != std::string::npos);
  CHECK(error_of("smtp://::1:2526").find("brackets") != std::string::npos);
  CHECK(error_of("smtp://[::1").find("']'") != std::string::npos);
  CHECK(error_of("smtp://[::1]2526").find("':port'") != std::string::npos);
  CHECK(error_of("smtp://[fe80::1%eth0]:25").find("zone") != std::string::npos);
  CHECK(error_of("smtp://[1.2.3.4]:25").find("not an IPv6") != std::string::npos);
  CHECK(error_of("smtp://[zz::1]:25").find("not an IPv6") != std::string::npos);
  CHECK(error_of("smtp://1.2.3:25").find("not an IPv4") != std::string::npos);
  CHECK(error_of("smtp://256.1.1.1:25").find("not an IPv4") != std::string::npos);
  CHECK(error_of("smtp://user@h:25").find("user information") != std::string::npos);
  CHECK(error_of("smtp://h:25/path").find("path") != std::string::npos);
  CHECK(error_of("smtp://h:25/").find("path") != std::string::npos);
  CHECK(error_of("smtp://h:25#frag").find("fragment") != std::string::npos);
  CHECK(error_of("smtp://h_x:25").find("'_'") != std::string::npos);
  CHECK(error_of("smtp://-h:25").find("'-'") != std::string::npos);
  CHECK(error_of("smtp://a..b:25").find("empty label") != std::string::npos);
  CHECK(error_of("smtp://" + std::string(64, 'a') + ":25").find("63") != std::string::npos);
  CHECK(error_of("smtp://h:25?").find("empty") != std::string::npos);
  CHECK(error_of("smtp://h:25?starttls=maybe").find("required, opportunistic or off") != std::string::npos);
  CHECK(error_of("smtp://h:25?starttls").find("required, opportunistic or off") != std::string::npos);
  CHECK(error_of("smtp://h:25?starttls=Required").find("required, opportunistic or off") !=
        std::string::npos);
  CHECK(error_of("smtp://h:25?tls=required").find("unknown option 'tls'") != std::string::npos);
  CHECK(error_of("smtp://h:25?starttls=off&starttls=required").find("twice") != std::string::npos);
  CHECK(error_of("smtp://h:25?starttls=off&x=1").find("unknown option") != std::string::npos);
  CHECK(error_of("smtp://h\r\n:25").find("printable ASCII") != std::string::npos);
  CHECK(error_of("smtp://h\xC3\xA9:25").find("printable ASCII") != std::string::npos);
  CHECK(error_of("smtps://h:465").find("starttls=required") != std::string::npos);
  CHECK(error_of("lmtp://h:24").find("LMTP") != std::string::npos);
  CHECK(error_of("h:25").find("unknown kind") != std::string::npos);
  CHECK(error_of("maildir:").find("empty") != std::string::npos);
  CHECK(error_of("maildir://x/y").find("maildir:/path") != std::string::npos);
  CHECK(error_of("maildir:/x\ny").find("control") != std::string::npos);
}

TEST_CASE("errors name the entry, with control bytes escaped, and value() throws") {
  auto r = parse_next_hop("smtp://h:25?starttls=\x01");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().entry.find("\\x01") != std::string::npos);
  CHECK(to_string(r.error()).starts_with("next hop '"));
  CHECK_THROWS_AS((void)r.value(), std::invalid_argument);
}

TEST_CASE("a list: failover order kept, every bad entry reported, empty list refused") {
  auto list =
      parse_next_hops({"smtp://[::1]:2526?starttls=required", "smtp://10.0.0.2:25", "maildir:/var/mail/out"});
  CHECK(list.errors.empty());
  REQUIRE(list.hops.size() == 3);
  CHECK(std::get<smtp_hop>(list.hops[0].target).host == "::1");
  CHECK(std::get<smtp_hop>(list.hops[1].target).host == "10.0.0.2");
  CHECK(std::holds_alternative<maildir_hop>(list.hops[2].target));

  list = parse_next_hops({"smtp://a:1", "bogus", "smtp://b:0"});
  CHECK(list.errors.size() == 2);
  CHECK(list.errors[0].entry == "bogus");
  CHECK(list.errors[1].entry == "smtp://b:0");

  list = parse_next_hops({});
  REQUIRE(list.errors.size() == 1);
  CHECK(list.errors[0].message.find("nowhere") != std::string::npos);
}
