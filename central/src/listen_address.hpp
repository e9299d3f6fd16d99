#pragma once
// "host:port" of [http] listen. host is an IPv4 literal, a bracketed IPv6 literal or "localhost"
// (mapped to 127.0.0.1: no name resolution at start-up). Private to semilab_central.
#include <arpa/inet.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace semilab::central {

struct listen_address {
  std::string host;  // numeric, without brackets
  std::uint16_t port = 0;
};

inline std::optional<listen_address> parse_listen_address(std::string_view s) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= s.size()) return std::nullopt;
  std::string_view host = s.substr(0, colon);
  std::string_view port = s.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || end != port.data() + port.size() || value > 65535) return std::nullopt;
  listen_address a;
  a.port = static_cast<std::uint16_t>(value);
  unsigned char buf[16];
  if (host == "localhost") {
    a.host = "127.0.0.1";
  } else if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    a.host = std::string(host.substr(1, host.size() - 2));
    if (::inet_pton(AF_INET6, a.host.c_str(), buf) != 1) return std::nullopt;
  } else {
    a.host = std::string(host);
    if (::inet_pton(AF_INET, a.host.c_str(), buf) != 1) return std::nullopt;
  }
  return a;
}

}  // namespace semilab::central
