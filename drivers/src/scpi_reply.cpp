#include <cctype>
#include <charconv>
#include <cmath>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>

namespace semilab::drivers {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

error_info bad(std::string_view what, std::string_view reply, std::string_view why) {
  return make_error(errc::bad_reply,
                    std::string(what) + " " + quote_reply(reply) + " " + std::string(why));
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

reply_framer::status reply_framer::feed(std::string_view buf) noexcept {
  while (pos_ < buf.size()) {
    char c = buf[pos_];
    switch (st_) {
      case state::text:
        if (c == term_) {
          end_ = pos_;
          cr_ = last_text_cr_;
          return status::complete;
        }
        if (element_start_ && c == '#') {
          st_ = state::hash;
        } else {
          element_start_ = c == ',' || c == ';' || (element_start_ && (c == ' ' || c == '\t'));
          last_text_cr_ = c == '\r';
        }
        ++pos_;
        break;
      case state::hash:
        if (c >= '1' && c <= '9') {
          digits_ = static_cast<unsigned>(c - '0');
          remaining_ = 0;
          st_ = state::length;
          ++pos_;
        } else if (c == '0') {
          // Indefinite block: its data ends at the terminator (NL^END).
          ++blocks_;
          st_ = state::text;
          element_start_ = false;
          last_text_cr_ = false;
          ++pos_;
        } else {
          st_ = state::text;  // "#H1F" and friends: a number; re-examine c as text
          element_start_ = false;
        }
        break;
      case state::length:
        if (!is_digit(c)) {  // not a block header after all: plain text
          st_ = state::text;
          element_start_ = false;
          break;
        }
        remaining_ = remaining_ * 10 + static_cast<std::size_t>(c - '0');
        ++pos_;
        if (--digits_ == 0) {
          if (remaining_ > max_) return status::too_long;
          ++blocks_;
          st_ = state::data;
        }
        break;
      case state::data: {
        std::size_t take = std::min(remaining_, buf.size() - pos_);
        pos_ += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          st_ = state::text;
          element_start_ = false;
          last_text_cr_ = false;
        }
        break;
      }
    }
    if (st_ == state::data && remaining_ == 0) {
      st_ = state::text;
      element_start_ = false;
      last_text_cr_ = false;
    }
    if (pos_ > max_) return status::too_long;
  }
  return status::need_more;
}

result<scpi_number> parse_number_reply(std::string_view reply, std::string_view what) {
  auto d = schemas::parse_decimal(trim(reply));
  if (!d) return bad(what, reply, "is not a number");
  scpi_number n{*d, 0, false};
  double v = d->to_double();
  if (!std::isfinite(v) || std::fabs(v) >= kScpiOverRange * (1 - 1e-9)) {
    n.quality |= schemas::quality::over_range;
    n.not_a_number = std::fabs(std::fabs(v) - kScpiNotANumber) < kScpiNotANumber * 1e-9;
  }
  return n;
}

result<bool> parse_bool_reply(std::string_view reply, std::string_view what) {
  std::string_view s = trim(reply);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  std::string u;
  for (char c : s) u.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (u == "1" || u == "ON") return true;
  if (u == "0" || u == "OFF") return false;
  return bad(what, reply, "is not a boolean (1, 0, ON, OFF)");
}

result<std::vector<std::string>> split_reply_list(std::string_view reply, std::string_view what) {
  std::vector<std::string> out;
  if (trim(reply).empty()) return out;
  char quote = 0;
  std::size_t start = 0;
  bool element_start = true;
  for (std::size_t i = 0; i < reply.size(); ++i) {
    char c = reply[i];
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (element_start && c == '#' && i + 1 < reply.size() && reply[i + 1] >= '1' &&
        reply[i + 1] <= '9') {
      auto n = static_cast<std::size_t>(reply[i + 1] - '0');
      if (i + 2 + n > reply.size()) return bad(what, reply, "has a truncated block header");
      std::size_t len = 0;
      for (std::size_t k = 0; k < n; ++k) {
        char d = reply[i + 2 + k];
        if (!is_digit(d)) return bad(what, reply, "has a malformed block header");
        len = len * 10 + static_cast<std::size_t>(d - '0');
      }
      if (len > reply.size() - (i + 2 + n)) return bad(what, reply, "has a truncated block");
      i = i + 1 + n + len;  // loop ++i moves past the data
      element_start = false;
      continue;
    }
    if (element_start && c == '#' && i + 1 < reply.size() && reply[i + 1] == '0') {
      i = reply.size() - 1;  // an indefinite block runs to the end of the message
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == ',') {
      out.emplace_back(trim(reply.substr(start, i - start)));
      start = i + 1;
      element_start = true;
      continue;
    }
    if (!std::isspace(static_cast<unsigned char>(c))) element_start = false;
  }
  if (quote) return bad(what, reply, "has an unterminated string");
  out.emplace_back(trim(reply.substr(start)));
  return out;
}

result<std::vector<scpi_number>> parse_number_list(std::string_view reply, std::string_view what) {
  auto parts = split_reply_list(reply, what);
  if (!parts) return parts.error();
  std::vector<scpi_number> out;
  out.reserve(parts->size());
  for (const auto& p : *parts) {
    auto n = parse_number_reply(p, what);
    if (!n)
      return bad(what, reply, "element " + std::to_string(out.size() + 1) + " is not a number");
    out.push_back(*n);
  }
  return out;
}

result<idn_fields> parse_idn(std::string_view reply) {
  std::string_view s = trim(reply);
  idn_fields f;
  std::string* fields[] = {&f.manufacturer, &f.model, &f.serial};
  for (auto* field : fields) {
    auto comma = s.find(',');
    if (comma == std::string_view::npos)
      return bad("*IDN? reply", reply, "does not have 4 comma-separated fields");
    *field = std::string(trim(s.substr(0, comma)));
    s.remove_prefix(comma + 1);
  }
  f.firmware = std::string(trim(s));
  if (f.manufacturer.empty() || f.model.empty())
    return bad("*IDN? reply", reply, "has an empty manufacturer or model field");
  return f;
}

result<std::string> parse_block(std::string_view reply, std::string_view what) {
  if (reply.size() < 2 || reply[0] != '#' || !is_digit(reply[1]))
    return bad(what, reply, "is not an arbitrary block (#<n><length><data>)");
  if (reply[1] == '0') return std::string(reply.substr(2));
  auto n = static_cast<std::size_t>(reply[1] - '0');
  if (reply.size() < 2 + n) return bad(what, reply, "has a truncated block header");
  std::size_t len = 0;
  for (std::size_t k = 0; k < n; ++k) {
    char d = reply[2 + k];
    if (!is_digit(d)) return bad(what, reply, "has a non-digit in the block length");
    len = len * 10 + static_cast<std::size_t>(d - '0');
  }
  std::string_view data = reply.substr(2 + n);
  if (data.size() < len)
    return bad(what, reply, "is shorter than its block length " + std::to_string(len));
  if (!trim(data.substr(len)).empty())
    return bad(what, reply, "has bytes after its block of " + std::to_string(len) + " bytes");
  return std::string(data.substr(0, len));
}

std::string esr_bits::describe() const {
  static constexpr std::string_view kNames[] = {"OPC", "RQC", "QYE", "DDE",
                                                "EXE", "CME", "URQ", "PON"};
  std::string out;
  for (unsigned b = 0; b < 8; ++b) {
    if (!(value & (1u << b))) continue;
    if (!out.empty()) out += ',';
    out += kNames[b];
  }
  return out.empty() ? "none" : out;
}

result<esr_bits> parse_esr_reply(std::string_view reply) {
  std::string_view s = trim(reply);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v > 255)
    return bad("*ESR? reply", reply, "is not an integer 0..255");
  return esr_bits{v};
}

}  // namespace semilab::drivers
