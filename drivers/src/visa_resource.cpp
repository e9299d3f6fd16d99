#include <semilab/drivers/visa_resource.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <vector>

namespace semilab::drivers {
namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Unsigned decimal (or 0x-prefixed hex when allow_hex) that must use the whole text.
std::optional<unsigned long> parse_uint(std::string_view s, bool allow_hex = false) {
  int base = 10;
  if (allow_hex && istarts_with(s, "0x")) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return std::nullopt;
  unsigned long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Splits on "::" except inside [...] (IPv6 literals).
std::vector<std::string_view> split_visa(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') ++depth;
    if (s[i] == ']') --depth;
    if (depth == 0 && s[i] == ':' && i + 1 < s.size() && s[i + 1] == ':') {
      out.push_back(s.substr(start, i - start));
      start = i + 2;
      ++i;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

class parser {
 public:
  explicit parser(std::string_view text) : text_(text) {}

  error_info fail(std::string_view what) const {
    std::string msg = "resource '";
    msg.append(text_);
    msg.append("': ");
    msg.append(what);
    return make_error(errc::bad_resource, std::move(msg));
  }

  // Host name or IP literal; brackets around IPv6 literals are removed.
  result<std::string> host(std::string_view h) const {
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if (h.empty()) return fail("empty host");
    for (char c : h) {
      if (std::isspace(static_cast<unsigned char>(c)) || c == '[' || c == ']' || c == '/' ||
          c == '?' || c == '@')
        return fail("invalid character in host '" + std::string(h) + "'");
    }
    return std::string(h);
  }

  result<std::uint16_t> port(std::string_view p) const {
    auto v = parse_uint(p);
    if (!v || *v == 0 || *v > 65535) return fail("port '" + std::string(p) + "' not in 1..65535");
    return static_cast<std::uint16_t>(*v);
  }

  // Board number after an interface keyword: "" -> 0, "3" -> 3.
  result<unsigned> board(std::string_view b, std::string_view keyword) const {
    if (b.empty()) return 0u;
    auto v = parse_uint(b);
    if (!v || *v > 255)
      return fail("bad board number '" + std::string(b) + "' after " + std::string(keyword));
    return static_cast<unsigned>(*v);
  }

  result<resource> parse() const {
    if (text_.empty()) return fail("empty resource string");
    for (char c : text_)
      if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
        return fail("contains whitespace or control characters");
    if (istarts_with(text_, "modbus-tcp://")) return modbus_tcp(text_.substr(13));
    if (istarts_with(text_, "modbus-rtu://")) return modbus_rtu(text_.substr(13));
    if (text_.find("://") != std::string_view::npos) return fail("unknown URI scheme");
    auto tok = split_visa(text_);
    std::string_view head = tok.front();
    if (istarts_with(head, "TCPIP")) return tcpip(tok);
    if (istarts_with(head, "USB")) return usb(tok);
    if (istarts_with(head, "ASRL")) return asrl(tok);
    return fail("unknown interface type '" + std::string(head) +
                "' (expected TCPIP, USB, ASRL, modbus-tcp:// or modbus-rtu://)");
  }

 private:
  result<resource> tcpip(std::vector<std::string_view> tok) const {
    auto b = board(tok[0].substr(5), "TCPIP");
    if (!b) return b.error();
    if (tok.size() >= 2 && iequals(tok.back(), "SOCKET")) {
      if (tok.size() != 4) return fail("expected TCPIP[n]::host::port::SOCKET");
      auto h = host(tok[1]);
      if (!h) return h.error();
      auto p = port(tok[2]);
      if (!p) return p.error();
      return resource{tcp_socket_resource{*b, std::move(*h), *p}};
    }
    if (tok.size() >= 2 && iequals(tok.back(), "INSTR")) tok.pop_back();
    if (tok.size() < 2 || tok.size() > 3)
      return fail("expected TCPIP[n]::host[::device]::INSTR or TCPIP[n]::host::port::SOCKET");
    auto h = host(tok[1]);
    if (!h) return h.error();
    tcpip_instr_resource r{*b, std::move(*h), "inst0"};
    if (tok.size() == 3) {
      if (tok[2].empty()) return fail("empty LAN device name");
      if (iequals(tok[2], "SOCKET") || iequals(tok[2], "INSTR"))
        return fail("missing port or device name before " + std::string(tok[2]));
      r.device = std::string(tok[2]);
    }
    return resource{std::move(r)};
  }

  result<resource> usb(std::vector<std::string_view> tok) const {
    auto b = board(tok[0].substr(3), "USB");
    if (!b) return b.error();
    if (tok.size() >= 2 && iequals(tok.back(), "RAW")) return fail("USB RAW class is not handled");
    if (tok.size() >= 2 && iequals(tok.back(), "INSTR")) tok.pop_back();
    if (tok.size() < 4 || tok.size() > 5)
      return fail("expected USB[n]::0xVID::0xPID::SERIAL[::interface]::INSTR");
    auto vid = parse_uint(tok[1], true);
    if (!vid || *vid > 0xFFFF) return fail("bad USB vendor id '" + std::string(tok[1]) + "'");
    auto pid = parse_uint(tok[2], true);
    if (!pid || *pid > 0xFFFF) return fail("bad USB product id '" + std::string(tok[2]) + "'");
    if (tok[3].empty()) return fail("empty USB serial number");
    usb_resource r{*b, static_cast<std::uint16_t>(*vid), static_cast<std::uint16_t>(*pid),
                   std::string(tok[3]), std::nullopt};
    if (tok.size() == 5) {
      auto intf = parse_uint(tok[4]);
      if (!intf || *intf > 255)
        return fail("bad USB interface number '" + std::string(tok[4]) + "'");
      r.interface_number = static_cast<std::uint16_t>(*intf);
    }
    return resource{std::move(r)};
  }

  // ASRL/dev/ttyUSB0::INSTR?baud=9600&parity=N&data=8&stop=1&flow=none: the line settings are
  // resource options (VISA keeps them as attributes; here the string is the whole configuration).
  result<resource> asrl(std::vector<std::string_view> tok) const {
    std::string_view options;
    if (auto q = tok.back().find('?'); q != std::string_view::npos) {
      options = tok.back().substr(q + 1);
      tok.back() = tok.back().substr(0, q);
      if (options.empty()) return fail("empty option list after '?'");
    }
    if (tok.size() == 2 && iequals(tok[1], "INSTR")) tok.pop_back();
    if (tok.size() != 1) return fail("expected ASRL/dev/PATH::INSTR or ASRLn::INSTR");
    std::string_view rest = tok[0].substr(4);
    if (rest.empty()) return fail("missing serial port after ASRL");
    serial_resource r;
    if (rest.front() == '/') {
      r.device = std::string(rest);
    } else {
      auto n = parse_uint(rest);
      if (!n || *n > 255) return fail("bad serial port '" + std::string(rest) + "' after ASRL");
      r.board = static_cast<unsigned>(*n);
    }
    if (!options.empty()) {
      auto q = query(options);
      if (!q) return q.error();
      for (auto& [k, v] : *q) {
        if (k == "flow") {
          std::string f(v);
          std::transform(f.begin(), f.end(), f.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          if (f == "none") r.flow = serial_resource::flow_control::none;
          else if (f == "xonxoff") r.flow = serial_resource::flow_control::xon_xoff;
          else if (f == "rtscts") r.flow = serial_resource::flow_control::rts_cts;
          else return fail("flow '" + std::string(v) + "' must be none, xonxoff or rtscts");
          continue;
        }
        auto ok = line_setting(k, v, r.baud, r.parity, r.data_bits, r.stop_bits);
        if (!ok) return ok.error();
        if (!*ok) return fail("unknown option '" + k + "' (known: baud, parity, data, stop, flow)");
      }
    }
    return resource{std::move(r)};
  }

  // Serial line settings shared by ASRL and modbus-rtu. false: not a line setting.
  result<bool> line_setting(const std::string& k, std::string_view v, unsigned& baud, char& parity,
                            unsigned& data_bits, unsigned& stop_bits) const {
    if (k == "baud") {
      auto n = parse_uint(v);
      if (!n || *n < 50 || *n > 4000000) return fail("baud '" + std::string(v) + "' invalid");
      baud = static_cast<unsigned>(*n);
    } else if (k == "parity") {
      if (v.size() != 1 || std::string_view("NEOneo").find(v[0]) == std::string_view::npos)
        return fail("parity '" + std::string(v) + "' must be N, E or O");
      parity = static_cast<char>(std::toupper(static_cast<unsigned char>(v[0])));
    } else if (k == "data") {
      auto n = parse_uint(v);
      if (!n || *n < 7 || *n > 8) return fail("data bits '" + std::string(v) + "' must be 7 or 8");
      data_bits = static_cast<unsigned>(*n);
    } else if (k == "stop") {
      auto n = parse_uint(v);
      if (!n || *n < 1 || *n > 2) return fail("stop bits '" + std::string(v) + "' must be 1 or 2");
      stop_bits = static_cast<unsigned>(*n);
    } else {
      return false;
    }
    return true;
  }

  // key=value pairs after '?'; duplicate keys are an error.
  result<std::vector<std::pair<std::string, std::string_view>>> query(std::string_view q) const {
    std::vector<std::pair<std::string, std::string_view>> out;
    while (!q.empty()) {
      auto amp = q.find('&');
      std::string_view kv = q.substr(0, amp);
      q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0)
        return fail("query parameter '" + std::string(kv) + "' is not key=value");
      std::string key(kv.substr(0, eq));
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      for (auto& [k, v] : out)
        if (k == key) return fail("query parameter '" + key + "' given twice");
      out.emplace_back(std::move(key), kv.substr(eq + 1));
    }
    return out;
  }

  result<std::uint8_t> unit(std::string_view v, unsigned lo, unsigned hi) const {
    auto n = parse_uint(v);
    if (!n || *n < lo || *n > hi)
      return fail("unit '" + std::string(v) + "' not in " + std::to_string(lo) + ".." +
                  std::to_string(hi));
    return static_cast<std::uint8_t>(*n);
  }

  result<resource> modbus_tcp(std::string_view rest) const {
    auto qpos = rest.find('?');
    std::string_view authority = rest.substr(0, qpos);
    if (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
    modbus_tcp_resource r;
    std::string_view host_part = authority;
    if (!authority.empty() && authority.front() == '[') {
      auto close = authority.find(']');
      if (close == std::string_view::npos) return fail("unterminated '[' in host");
      host_part = authority.substr(0, close + 1);
      std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') return fail("expected ':port' after ']'");
        auto p = port(after.substr(1));
        if (!p) return p.error();
        r.port = *p;
      }
    } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
      host_part = authority.substr(0, colon);
      auto p = port(authority.substr(colon + 1));
      if (!p) return p.error();
      r.port = *p;
    }
    auto h = host(host_part);
    if (!h) return h.error();
    r.host = std::move(*h);
    if (qpos != std::string_view::npos) {
      auto q = query(rest.substr(qpos + 1));
      if (!q) return q.error();
      for (auto& [k, v] : *q) {
        if (k != "unit") return fail("unknown query parameter '" + k + "' (known: unit)");
        auto u = unit(v, 0, 255);
        if (!u) return u.error();
        r.unit = *u;
      }
    }
    return resource{std::move(r)};
  }

  result<resource> modbus_rtu(std::string_view rest) const {
    auto qpos = rest.find('?');
    std::string_view path = rest.substr(0, qpos);
    if (path.size() < 2 || path.front() != '/')
      return fail("expected modbus-rtu:///dev/PATH (absolute device path)");
    modbus_rtu_resource r;
    r.device = std::string(path);
    if (qpos != std::string_view::npos) {
      auto q = query(rest.substr(qpos + 1));
      if (!q) return q.error();
      for (auto& [k, v] : *q) {
        auto line = line_setting(k, v, r.baud, r.parity, r.data_bits, r.stop_bits);
        if (!line) return line.error();
        if (*line) continue;
        if (k == "unit") {
          auto u = unit(v, 1, 247);
          if (!u) return u.error();
          r.unit = *u;
        } else if (k == "rs485") {
          if (v != "0" && v != "1") return fail("rs485 '" + std::string(v) + "' must be 0 or 1");
          r.rs485 = v == "1";
        } else if (k == "rts") {
          if (iequals(v, "none")) r.rts = modbus_rtu_resource::rts_mode::none;
          else if (iequals(v, "up")) r.rts = modbus_rtu_resource::rts_mode::up;
          else if (iequals(v, "down")) r.rts = modbus_rtu_resource::rts_mode::down;
          else return fail("rts '" + std::string(v) + "' must be none, up or down");
        } else if (k == "rts_delay") {
          auto n = parse_uint(v);
          if (!n || *n > 1000000)
            return fail("rts_delay '" + std::string(v) + "' must be 0..1000000 (microseconds)");
          r.rts_delay_us = static_cast<unsigned>(*n);
        } else {
          return fail("unknown query parameter '" + k +
                      "' (known: baud, parity, data, stop, unit, rs485, rts, rts_delay)");
        }
      }
    }
    return resource{std::move(r)};
  }

  std::string_view text_;
};

std::string bracket(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

result<resource> parse_resource(std::string_view text) { return parser(text).parse(); }

std::string to_string(const resource& r) {
  struct visitor {
    std::string operator()(const tcp_socket_resource& x) const {
      return "TCPIP" + std::to_string(x.board) + "::" + bracket(x.host) +
             "::" + std::to_string(x.port) + "::SOCKET";
    }
    std::string operator()(const tcpip_instr_resource& x) const {
      return "TCPIP" + std::to_string(x.board) + "::" + bracket(x.host) + "::" + x.device +
             "::INSTR";
    }
    std::string operator()(const usb_resource& x) const {
      char ids[32];
      std::snprintf(ids, sizeof ids, "::0x%04X::0x%04X::", unsigned{x.vendor_id},
                    unsigned{x.product_id});
      std::string s = "USB" + std::to_string(x.board) + ids + x.serial;
      if (x.interface_number) s += "::" + std::to_string(*x.interface_number);
      return s + "::INSTR";
    }
    std::string operator()(const serial_resource& x) const {
      std::string s = "ASRL" + (x.board ? std::to_string(*x.board) : x.device) + "::INSTR";
      const serial_resource defaults;
      std::string opts;
      auto add = [&](std::string kv) { opts += (opts.empty() ? "?" : "&") + kv; };
      if (x.baud != defaults.baud) add("baud=" + std::to_string(x.baud));
      if (x.parity != defaults.parity) add(std::string("parity=") + x.parity);
      if (x.data_bits != defaults.data_bits) add("data=" + std::to_string(x.data_bits));
      if (x.stop_bits != defaults.stop_bits) add("stop=" + std::to_string(x.stop_bits));
      if (x.flow == serial_resource::flow_control::xon_xoff) add("flow=xonxoff");
      if (x.flow == serial_resource::flow_control::rts_cts) add("flow=rtscts");
      return s + opts;
    }
    std::string operator()(const modbus_tcp_resource& x) const {
      return "modbus-tcp://" + bracket(x.host) + ":" + std::to_string(x.port) +
             "?unit=" + std::to_string(x.unit);
    }
    std::string operator()(const modbus_rtu_resource& x) const {
      return "modbus-rtu://" + x.device + "?baud=" + std::to_string(x.baud) + "&parity=" +
             std::string(1, x.parity) + "&data=" + std::to_string(x.data_bits) +
             "&stop=" + std::to_string(x.stop_bits) + "&unit=" + std::to_string(x.unit) +
             (x.rs485 ? "&rs485=1" : "") +
             (x.rts == modbus_rtu_resource::rts_mode::up     ? "&rts=up"
              : x.rts == modbus_rtu_resource::rts_mode::down ? "&rts=down"
                                                             : "") +
             (x.rts_delay_us ? "&rts_delay=" + std::to_string(*x.rts_delay_us) : "");
    }
  };
  return std::visit(visitor{}, r);
}

std::string_view kind_name(const resource& r) noexcept {
  static constexpr std::string_view kNames[] = {"tcp-socket", "tcpip-instr", "usb",
                                                "serial",     "modbus-tcp",  "modbus-rtu"};
  return kNames[r.index()];
}

result<void> require_openable(const resource& r) {
  if (const auto* t = std::get_if<tcpip_instr_resource>(&r); t && istarts_with(t->device, "hislip"))
    return make_error(errc::not_supported,
                      "resource '" + to_string(r) + "': HiSLIP is not supported; use the "
                      "instrument's VXI-11 name (inst0) or its raw socket (TCPIP::host::5025::SOCKET)");
  if (std::holds_alternative<modbus_tcp_resource>(r) || std::holds_alternative<modbus_rtu_resource>(r))
    return make_error(errc::not_supported,
                      "resource '" + to_string(r) + "': " + std::string(kind_name(r)) +
                          " is not a message-based (SCPI) resource");
  return {};
}

}  // namespace semilab::drivers
