#include "usbtmc_proto.hpp"

#include <algorithm>

namespace semilab::drivers::usbtmc {
namespace {

void put_u32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v >> 16);
  p[3] = static_cast<std::uint8_t>(v >> 24);
}

std::uint32_t get_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

std::array<std::uint8_t, kHeaderSize> header(std::uint8_t msg_id, std::uint8_t btag,
                                             std::uint32_t size, std::uint8_t attributes,
                                             std::uint8_t term) {
  std::array<std::uint8_t, kHeaderSize> h{};
  h[0] = msg_id;
  h[1] = btag;
  h[2] = static_cast<std::uint8_t>(~btag);
  put_u32(&h[4], size);
  h[8] = attributes;
  h[9] = term;
  return h;
}

}  // namespace

std::string encode_dev_dep_msg_out(std::uint8_t btag, std::string_view payload, bool eom) {
  auto h = header(kDevDepMsgOut, btag, static_cast<std::uint32_t>(payload.size()), eom ? 1 : 0, 0);
  std::string out;
  out.reserve(kHeaderSize + payload.size() + 3);
  out.append(reinterpret_cast<const char*>(h.data()), h.size());
  out.append(payload);
  out.append(alignment_padding(out.size()), '\0');
  return out;
}

std::array<std::uint8_t, kHeaderSize> encode_request_dev_dep_msg_in(std::uint8_t btag,
                                                                    std::uint32_t transfer_size,
                                                                    std::optional<char> term_char) {
  return header(kRequestDevDepMsgIn, btag, transfer_size, term_char ? 0x02 : 0,
                term_char ? static_cast<std::uint8_t>(*term_char) : 0);
}

std::array<std::uint8_t, kHeaderSize> encode_trigger(std::uint8_t btag) {
  return header(kTrigger, btag, 0, 0, 0);
}

header_status parse_bulk_in_header(std::span<const std::uint8_t> b, std::uint8_t expected_tag,
                                   bulk_in_header& out) {
  if (b.size() < kHeaderSize) return header_status::too_short;
  if (b[2] != static_cast<std::uint8_t>(~b[1])) return header_status::bad_tag_inverse;
  if (b[0] != kDevDepMsgIn) return header_status::bad_msg_id;
  out.msg_id = b[0];
  out.btag = b[1];
  out.transfer_size = get_u32(&b[4]);
  out.eom = (b[8] & 0x01) != 0;
  out.ended_on_term = (b[8] & 0x02) != 0;
  if (b[1] != expected_tag) return header_status::wrong_tag;
  return header_status::ok;
}

std::optional<capabilities> parse_capabilities(std::span<const std::uint8_t> b) {
  if (b.size() < 6) return std::nullopt;
  capabilities c;
  c.status = b[0];
  c.bcd_usbtmc = static_cast<std::uint16_t>(b[2] | b[3] << 8);
  c.indicator_pulse = (b[4] & 0x04) != 0;
  c.talk_only = (b[4] & 0x02) != 0;
  c.listen_only = (b[4] & 0x01) != 0;
  c.term_char = (b[5] & 0x01) != 0;
  if (b.size() >= 16) {
    c.usb488 = (b[14] & 0x04) != 0 || b[12] != 0 || b[13] != 0;
    c.usb488_ren_control = (b[14] & 0x02) != 0;
    c.usb488_trigger = (b[14] & 0x01) != 0;
    c.scpi = (b[15] & 0x08) != 0;
    c.sr1 = (b[15] & 0x04) != 0;
  }
  return c;
}

reply_reader::reply_reader(std::size_t max_packet, std::size_t max_reply, std::size_t max_transfer)
    : max_packet_(max_packet == 0 ? 64 : max_packet),
      max_reply_(max_reply),
      max_transfer_(std::clamp<std::size_t>(max_transfer, 1, 0x7FFFFFFF)) {}

std::uint32_t reply_reader::begin_transfer(std::uint8_t btag) {
  tag_ = btag;
  in_header_ = true;
  transfer_.clear();
  transfer_bytes_ = 0;
  header_reads_ = 0;
  state_ = step::read;
  // One byte more than the limit, so that a reply that is too long is seen as such.
  std::size_t room = max_reply_ + 2 > message_.size() ? max_reply_ + 2 - message_.size() : 1;
  requested_ = static_cast<std::uint32_t>(std::min(room, max_transfer_));
  return requested_;
}

std::size_t reply_reader::read_size() const noexcept {
  // The header may span packets when wMaxPacketSize < 12 (full-speed bulk allows 8).
  if (in_header_) return round_up(kHeaderSize, max_packet_);
  std::size_t declared = header_.transfer_size;
  std::size_t end = kHeaderSize + declared + alignment_padding(declared);
  std::size_t left = end > transfer_bytes_ ? end - transfer_bytes_ : 0;
  return std::max(max_packet_, round_up(left, max_packet_));
}

bool reply_reader::append(std::string_view bytes) {
  if (message_.size() + bytes.size() > max_reply_ + 1) {
    fail(errc::reply_too_long);
    return false;
  }
  message_.append(bytes);
  return true;
}

reply_reader::step reply_reader::feed(std::span<const std::uint8_t> bytes) {
  if (state_ != step::read) return state_;
  const std::size_t asked = read_size();
  const std::size_t n = bytes.size();
  if (n > asked) return fail(errc::bad_reply);  // libusb reports overflow; never trust it
  const bool short_packet = n < asked || n % max_packet_ != 0;
  std::string_view chars(reinterpret_cast<const char*>(bytes.data()), n);

  if (in_header_) {
    if (++header_reads_ > 8) return fail(errc::bad_reply);
    if (n == 0) {
      ++zlps_;  // ends an earlier transfer of whole packets
      return state_;
    }
    switch (parse_bulk_in_header(bytes, tag_, header_)) {
      case header_status::ok:
        break;
      case header_status::wrong_tag:
        return fail(errc::stray_data);
      default:
        // Siglent: payload the previous transfer did not declare, in a header-less packet.
        if (transfers_ > 0 && last_ended_full_) {
          if (!append(chars)) return state_;
          surplus_ += n;
          surplus_total_ += n;
          last_ended_full_ = !short_packet;
          return state_;
        }
        return fail(errc::bad_reply);
    }
    if (header_.transfer_size > requested_) return fail(errc::bad_reply);
    ++transfers_;
    in_header_ = false;
    transfer_bytes_ = n;
    transfer_.assign(chars.substr(kHeaderSize));
  } else {
    transfer_bytes_ += n;
    transfer_.append(chars);
    if (transfer_.size() > max_reply_ + kHeaderSize + max_transfer_)
      return fail(errc::reply_too_long);
  }
  const std::size_t declared = header_.transfer_size;
  if (short_packet) return end_transfer(true);
  if (transfer_bytes_ >= kHeaderSize + declared + alignment_padding(declared))
    return end_transfer(false);
  return state_;
}

reply_reader::step reply_reader::end_transfer(bool short_packet) {
  const std::size_t declared = header_.transfer_size;
  const std::size_t avail = transfer_.size();
  std::size_t take = std::min(avail, declared);
  std::size_t undeclared = 0;
  if (avail > declared + alignment_padding(declared)) {
    // More than the header declared and more than padding: the header undercounted (Siglent).
    take = avail;
    undeclared = avail - declared;
  }
  // Bytes that arrived ahead of their declaration were delivered already: this transfer's
  // declared size covers them at its end.
  std::size_t already = std::min(surplus_, take);
  surplus_ = surplus_ - already + undeclared;
  surplus_total_ += undeclared;
  if (!append(std::string_view(transfer_).substr(0, take - already))) return state_;
  last_ended_full_ = !short_packet;
  transfer_.clear();
  in_header_ = true;
  if (header_.eom && avail >= declared) {
    state_ = step::complete;
  } else {
    state_ = step::request;
  }
  return state_;
}

}  // namespace semilab::drivers::usbtmc
