// Client network access lists; see network_acl.hpp.
#include "server/network_acl.hpp"

#include <boost/asio/ip/address_v4.hpp>
#include <boost/system/error_code.hpp>
#include <charconv>
#include <stdexcept>
#include <string>

namespace mukai::server {

namespace {

// The prefix after '/': decimal digits only (no sign, no spaces, no leading '+'), at most `max`.
std::optional<unsigned> parse_prefix(std::string_view text, unsigned max) noexcept {
  if (text.empty() || text.size() > 3) return std::nullopt;
  for (const char c : text)
    if (c < '0' || c > '9') return std::nullopt;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

}  // namespace

boost::asio::ip::address_v6::bytes_type to_v6_bytes(const boost::asio::ip::address& a) noexcept {
  if (a.is_v4()) return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a.to_v4()).to_bytes();
  return a.to_v6().to_bytes();
}

boost::asio::ip::address unmap_address(const boost::asio::ip::address& a) noexcept {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  return a;
}

std::optional<ip_network> ip_network::parse(std::string_view text) {
  const std::size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  if (host.empty() || host.find('%') != std::string_view::npos) return std::nullopt;

  boost::system::error_code ec;
  const boost::asio::ip::address address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  const unsigned family_bits = address.is_v4() ? 32 : 128;
  unsigned prefix = family_bits;
  if (slash != std::string_view::npos) {
    const auto p = parse_prefix(text.substr(slash + 1), family_bits);
    if (!p) return std::nullopt;
    prefix = *p;
  }
  if (address.is_v4()) prefix += 96;

  ip_network n;
  n.address = to_v6_bytes(address);
  n.prefix = static_cast<std::uint8_t>(prefix);
  // Clear the host bits so that equal networks compare equal and contains() is a plain compare.
  for (unsigned bit = prefix; bit < 128; ++bit)
    n.address[bit / 8] = static_cast<unsigned char>(n.address[bit / 8] & ~(0x80u >> (bit % 8)));
  return n;
}

bool ip_network::contains(const boost::asio::ip::address& a) const noexcept {
  const auto bytes = to_v6_bytes(a);
  const unsigned full = prefix / 8;
  for (unsigned i = 0; i < full; ++i)
    if (bytes[i] != address[i]) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xFFu << (8 - rest));
  return (bytes[full] & mask) == address[full];
}

network_acl::network_acl(const std::vector<std::string>& networks) {
  networks_.reserve(networks.size());
  for (const auto& entry : networks) {
    auto n = ip_network::parse(entry);
    if (!n) throw std::invalid_argument("\"" + entry + "\" is not an IP address or address/prefix");
    networks_.push_back(*n);
  }
}

bool network_acl::allows(const boost::asio::ip::address& a) const noexcept {
  for (const auto& n : networks_)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace mukai::server
