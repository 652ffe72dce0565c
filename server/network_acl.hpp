// Client network access lists: "who may connect" ([smtp] client_networks, and any other list of
// networks such as [admin] metrics_networks), matched against Asio addresses.
//
// Invariants: every entry is parsed strictly at start-up (or reload) - an entry that does not parse
// is an error, never skipped, because a silently dropped entry changes who is let in. IPv4 is kept
// as IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n), so an IPv4 client that reaches an IPv6 socket as
// ::ffff:192.0.2.1 matches "192.0.2.0/24" exactly as one that arrives on an IPv4 socket. Host bits
// beyond the prefix are ignored ("10.1.2.3/8" is 10.0.0.0/8, as Postfix's mynetworks reads it).
// Zone indices ("fe80::1%eth0") are refused: a network is not bound to an interface here.
// Threading: immutable after construction; share freely.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/address_v6.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::server {

// One network: the address with host bits cleared, as IPv6 (IPv4 mapped), and its prefix length
// in that IPv6 view (0..128; an IPv4 /n is 96 + n).
struct ip_network {
  boost::asio::ip::address_v6::bytes_type address{};
  std::uint8_t prefix = 0;

  // "192.0.2.0/24", "192.0.2.1" (= /32), "2001:db8::/32", "::1" (= /128). nullopt if it does not parse.
  [[nodiscard]] static std::optional<ip_network> parse(std::string_view text);
  [[nodiscard]] bool contains(const boost::asio::ip::address& a) const noexcept;
  bool operator==(const ip_network&) const = default;
};

// The IPv6 view of an address (IPv4 becomes IPv4-mapped); the form ip_network matches against.
[[nodiscard]] boost::asio::ip::address_v6::bytes_type to_v6_bytes(const boost::asio::ip::address& a) noexcept;

// An IPv4-mapped IPv6 address as the IPv4 address it is; anything else unchanged. Use it before
// logging, counting per client or writing the client address into a Received header.
[[nodiscard]] boost::asio::ip::address unmap_address(const boost::asio::ip::address& a) noexcept;

class network_acl {
 public:
  // An empty list: nobody is allowed.
  network_acl() = default;
  // Throws std::invalid_argument naming the first entry that does not parse (start-up, reload).
  explicit network_acl(const std::vector<std::string>& networks);

  [[nodiscard]] bool allows(const boost::asio::ip::address& a) const noexcept;
  [[nodiscard]] const std::vector<ip_network>& networks() const noexcept { return networks_; }

 private:
  std::vector<ip_network> networks_;
};

}  // namespace mukai::server
