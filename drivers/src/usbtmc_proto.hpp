#pragma once
// USBTMC / USB488 wire format, free of libusb: Bulk-OUT headers, bTag rules, Bulk-IN header
// validation and the assembly of one reply message from the Bulk-IN transfers that carry it.
// Everything here takes outside bytes and never throws or reads out of bounds on them
// (fuzzed by tests/fuzz/fuzz_usbtmc_header.cpp).
//
// References: USB-IF USBTMC 1.0 (tables 1-4, 8-11, 15-20, 37) and USB488 1.0 (tables 11-12, 40);
// device quirks in ../../shared/reference/instrument-io.md §2 (Siglent, Rigol).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <semilab/drivers/error.hpp>
#include <span>
#include <string>
#include <string_view>

namespace semilab::drivers::usbtmc {

inline constexpr std::size_t kHeaderSize = 12;

// Bulk MsgIDs.
inline constexpr std::uint8_t kDevDepMsgOut = 1;
inline constexpr std::uint8_t kRequestDevDepMsgIn = 2;
inline constexpr std::uint8_t kDevDepMsgIn = 2;
inline constexpr std::uint8_t kTrigger = 128;  // USB488

// Class requests (bRequest).
inline constexpr std::uint8_t kInitiateAbortBulkOut = 1;
inline constexpr std::uint8_t kCheckAbortBulkOutStatus = 2;
inline constexpr std::uint8_t kInitiateAbortBulkIn = 3;
inline constexpr std::uint8_t kCheckAbortBulkInStatus = 4;
inline constexpr std::uint8_t kInitiateClear = 5;
inline constexpr std::uint8_t kCheckClearStatus = 6;
inline constexpr std::uint8_t kGetCapabilities = 7;
inline constexpr std::uint8_t kIndicatorPulse = 64;
inline constexpr std::uint8_t kReadStatusByte = 128;  // USB488

// bmRequestType: device-to-host | class | endpoint (0xA2) or interface (0xA1) recipient.
inline constexpr std::uint8_t kRequestTypeEndpointIn = 0xA2;
inline constexpr std::uint8_t kRequestTypeInterfaceIn = 0xA1;

// USBTMC_status values.
inline constexpr std::uint8_t kStatusSuccess = 0x01;
inline constexpr std::uint8_t kStatusPending = 0x02;
inline constexpr std::uint8_t kStatusFailed = 0x80;
inline constexpr std::uint8_t kStatusTransferNotInProgress = 0x81;
inline constexpr std::uint8_t kStatusSplitNotInProgress = 0x82;
inline constexpr std::uint8_t kStatusSplitInProgress = 0x83;

// Interface class/subclass of a USBTMC interface; protocol 1 = USB488.
inline constexpr std::uint8_t kInterfaceClass = 0xFE;
inline constexpr std::uint8_t kInterfaceSubclass = 0x03;
inline constexpr std::uint8_t kProtocolUsb488 = 0x01;

// bTag for Bulk-OUT headers: 1..255, never 0, wraps 255 -> 1.
class btag_counter {
 public:
  std::uint8_t next() noexcept {
    last_ = static_cast<std::uint8_t>(last_ == 255 ? 1 : last_ + 1);
    return last_;
  }
  [[nodiscard]] std::uint8_t last() const noexcept { return last_; }

 private:
  std::uint8_t last_ = 0;
};

// bTag for READ_STATUS_BYTE: 2..127 (USB488 table 11), wraps 127 -> 2.
class stb_tag_counter {
 public:
  std::uint8_t next() noexcept {
    last_ = static_cast<std::uint8_t>(last_ < 2 || last_ >= 127 ? 2 : last_ + 1);
    return last_;
  }

 private:
  std::uint8_t last_ = 1;
};

// Bytes after `n` header+payload bytes that make a transfer a multiple of 4 (0..3).
constexpr std::size_t alignment_padding(std::size_t n) noexcept {
  return (4 - n % 4) % 4;
}
constexpr std::size_t round_up(std::size_t n, std::size_t unit) noexcept {
  return unit == 0 ? n : (n + unit - 1) / unit * unit;
}

// One DEV_DEP_MSG_OUT transfer: header, payload, zero padding to a multiple of 4.
[[nodiscard]] std::string encode_dev_dep_msg_out(std::uint8_t btag, std::string_view payload,
                                                 bool eom);
// REQUEST_DEV_DEP_MSG_IN: the device may send up to `transfer_size` payload bytes; with
// `term_char`, it ends the transfer after that byte (only if GET_CAPABILITIES allows it).
[[nodiscard]] std::array<std::uint8_t, kHeaderSize> encode_request_dev_dep_msg_in(
    std::uint8_t btag, std::uint32_t transfer_size, std::optional<char> term_char = std::nullopt);
// USB488 TRIGGER (header only).
[[nodiscard]] std::array<std::uint8_t, kHeaderSize> encode_trigger(std::uint8_t btag);

struct bulk_in_header {
  std::uint8_t msg_id = 0;
  std::uint8_t btag = 0;
  std::uint32_t transfer_size = 0;
  bool eom = false;            // bmTransferAttributes D0
  bool ended_on_term = false;  // D1
};

enum class header_status {
  ok,
  too_short,        // fewer than 12 bytes
  bad_msg_id,       // not DEV_DEP_MSG_IN
  bad_tag_inverse,  // bTagInverse != ~bTag: not a header at all
  wrong_tag,        // a valid header for another request (stale reply)
};

// Validates a Bulk-IN header against the bTag of the REQUEST_DEV_DEP_MSG_IN it answers.
[[nodiscard]] header_status parse_bulk_in_header(std::span<const std::uint8_t> bytes,
                                                 std::uint8_t expected_tag, bulk_in_header& out);

// GET_CAPABILITIES reply (0x18 bytes).
struct capabilities {
  std::uint8_t status = 0;
  std::uint16_t bcd_usbtmc = 0;
  bool indicator_pulse = false;
  bool talk_only = false;
  bool listen_only = false;
  bool term_char = false;  // device may end a Bulk-IN transfer on TermChar
  bool usb488 = false;     // reply long enough and interface is USB488
  bool usb488_ren_control = false;
  bool usb488_trigger = false;
  bool scpi = false;
  bool sr1 = false;
};
[[nodiscard]] std::optional<capabilities> parse_capabilities(std::span<const std::uint8_t> bytes);

// Assembles one reply message from successive Bulk-IN reads (each one libusb transfer). The
// caller sends REQUEST_DEV_DEP_MSG_IN with request_size() under a new bTag when told
// step::request, then reads read_size() bytes and feeds what arrived, until step::complete.
//
// Completion rules:
//  - A transfer ends on a short packet (possibly zero-length) or when 12 + TransferSize +
//    padding bytes have arrived, whichever first: a device that sends no short packet after an
//    exact multiple of wMaxPacketSize (Rigol DS1102Z-E) never makes the reader wait. Reads are
//    sized so that they never extend past the declared end of a transfer; the first read of a
//    transfer is the packet(s) that carry the 12-byte header.
//  - A zero-length packet where a header is expected is the ZLP that ends an earlier transfer
//    of exactly n packets: skipped (a bounded number of times).
//  - Siglent SDG1062X: the header declares only what fits into the first packet (TransferSize
//    52 of 64) with EOM clear and more payload follows in a header-less short packet; the next
//    transfer then declares those bytes again and pads with zeros. Bytes beyond the declared
//    size (and beyond alignment padding) are kept as payload and counted as a surplus that the
//    next transfer's TransferSize is reduced by. A header-less packet arriving where a header
//    is expected, right after a transfer that ended without a short packet, is such surplus.
//  - EOM ends the message only when the transfer carried at least TransferSize bytes (USBTMC
//    3.3.1.1: the host ignores EOM otherwise).
class reply_reader {
 public:
  enum class step { request, read, complete, failed };

  reply_reader(std::size_t max_packet, std::size_t max_reply, std::size_t max_transfer = 1 << 20);

  // Before each REQUEST_DEV_DEP_MSG_IN: the tag it carries. Returns the TransferSize to ask for.
  std::uint32_t begin_transfer(std::uint8_t btag);
  // Bytes to ask libusb for in the next Bulk-IN read (a multiple of wMaxPacketSize).
  [[nodiscard]] std::size_t read_size() const noexcept;
  // One Bulk-IN read completed with these bytes.
  step feed(std::span<const std::uint8_t> bytes);

  [[nodiscard]] step state() const noexcept { return state_; }
  // errc::bad_reply (not a USBTMC header), errc::stray_data (another request's reply),
  // errc::reply_too_long. Valid when state() == failed.
  [[nodiscard]] errc error() const noexcept { return error_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  std::string take_message() { return std::move(message_); }
  [[nodiscard]] std::uint8_t btag() const noexcept { return tag_; }
  // Diagnostics for tests and traces.
  [[nodiscard]] std::size_t transfers() const noexcept { return transfers_; }
  [[nodiscard]] std::size_t zlps_skipped() const noexcept { return zlps_; }
  [[nodiscard]] std::size_t surplus_bytes() const noexcept { return surplus_total_; }

 private:
  step fail(errc e) {
    error_ = e;
    state_ = step::failed;
    return state_;
  }
  step end_transfer(bool short_packet);
  bool append(std::string_view bytes);

  std::size_t max_packet_;
  std::size_t max_reply_;
  std::size_t max_transfer_;
  step state_ = step::request;
  errc error_ = errc::ok;
  std::string message_;
  std::uint8_t tag_ = 0;
  std::uint32_t requested_ = 0;   // TransferSize of the request in progress
  bool in_header_ = true;         // next read starts a transfer
  bool last_ended_full_ = false;  // previous transfer ended without a short packet
  bulk_in_header header_{};
  std::string transfer_;            // payload bytes of the current transfer (after the header)
  std::size_t transfer_bytes_ = 0;  // bytes of the current transfer incl. header
  std::size_t asked_ = 0;           // size of the read in progress
  std::size_t surplus_ = 0;         // bytes received ahead of their declaration (Siglent)
  std::size_t surplus_total_ = 0;
  std::size_t transfers_ = 0;
  std::size_t zlps_ = 0;
  std::size_t header_reads_ = 0;  // reads in header position in this transfer
};

}  // namespace semilab::drivers::usbtmc
