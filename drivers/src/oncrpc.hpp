#pragma once
// ONC RPC version 2 (RFC 5531) over TCP, the part VXI-11 needs: XDR encoding of 32-bit items and
// variable-length opaque data (RFC 4506), record marking (RFC 5531 section 11), call and reply
// headers with AUTH_NONE. Written by hand so that it is small, bounds-checked and never throws:
// every decoder takes outside input and reports failure as a value.
//
// Used by the VXI-11 transport (client side) and by the VXI-11 simulator (server side).
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace semilab::drivers::oncrpc {

// ---- errors -------------------------------------------------------------------------------
// RPC-level failures: malformed input, and the reply states of RFC 5531 other than SUCCESS.
enum class rpc_errc {
  ok = 0,
  malformed_record = 1,  // record marking broken (e.g. a fragment longer than allowed)
  record_too_long,       // a record exceeds the receiver's limit
  malformed_reply,       // reply header or results do not decode
  not_a_reply,           // msg_type is not REPLY
  xid_mismatch,          // a reply to another call
  rpc_mismatch,          // MSG_DENIED / RPC_MISMATCH: the server does not speak RPC version 2
  auth_error,            // MSG_DENIED / AUTH_ERROR
  prog_unavail,          // program not served at this port
  prog_mismatch,         // program version not supported
  proc_unavail,          // procedure not served
  garbage_args,          // server could not decode the arguments
  system_err,            // server-side failure (memory, ...)
};
const boost::system::error_category& rpc_category() noexcept;
inline boost::system::error_code make_error_code(rpc_errc e) noexcept {
  return {static_cast<int>(e), rpc_category()};
}

// ---- XDR ----------------------------------------------------------------------------------
// Appends big-endian 4-byte units. Variable-length opaque and string items are a length then
// the bytes, zero-padded to a multiple of 4.
class xdr_writer {
 public:
  explicit xdr_writer(std::string& out) noexcept : out_(out) {}
  void u32(std::uint32_t v);
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void boolean(bool v) { u32(v ? 1u : 0u); }
  void opaque(std::string_view bytes);  // variable length: opaque<> and string<>

 private:
  std::string& out_;
};

// Reads from a view; every getter returns false (and leaves the reader failed) when the input
// is short or an item is out of its bounds. The view must outlive the reader and what opaque()
// returned.
class xdr_reader {
 public:
  explicit xdr_reader(std::string_view in) noexcept : in_(in) {}
  [[nodiscard]] bool u32(std::uint32_t& v) noexcept;
  [[nodiscard]] bool i32(std::int32_t& v) noexcept;
  [[nodiscard]] bool boolean(bool& v) noexcept;  // only 0 and 1 are valid
  // Variable-length opaque of at most `max` bytes (padding must be present; its value is not
  // checked, as RFC 4506 receivers commonly do).
  [[nodiscard]] bool opaque(std::string_view& v, std::size_t max = 0xFFFFFFFFu) noexcept;
  [[nodiscard]] std::size_t remaining() const noexcept { return in_.size() - pos_; }
  [[nodiscard]] bool failed() const noexcept { return failed_; }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

// ---- record marking -------------------------------------------------------------------------
inline constexpr std::uint32_t kLastFragment = 0x80000000u;
inline constexpr std::uint32_t kMaxFragment = 0x7FFFFFFFu;

// `payload` as one record (one last fragment, or several when longer than kMaxFragment, which
// never happens here).
[[nodiscard]] std::string frame_record(std::string_view payload);

// Reassembles records from a TCP byte stream. feed() appends bytes; next() takes one complete
// record (all fragments joined) when there is one. A record longer than `max_record` fails for
// good (the stream cannot be resynchronised: the caller closes the connection).
class record_assembler {
 public:
  enum class status { need_more, complete, too_long };
  explicit record_assembler(std::size_t max_record) noexcept : max_(max_record) {}
  void feed(std::string_view bytes) { buf_.append(bytes); }
  // On `complete`, `record` holds the record and its bytes are consumed.
  [[nodiscard]] status next(std::string& record);
  // Bytes received but not yet part of a returned record.
  [[nodiscard]] std::size_t buffered() const noexcept { return buf_.size() - pos_; }
  void reset() noexcept;

 private:
  std::size_t max_;
  std::string buf_;        // raw stream bytes
  std::size_t pos_ = 0;    // first byte of buf_ not yet parsed
  std::string partial_;    // payload of fragments of the current record so far
  bool failed_ = false;
};

// ---- messages -----------------------------------------------------------------------------
inline constexpr std::uint32_t kRpcVersion = 2;
inline constexpr std::uint32_t kCall = 0;
inline constexpr std::uint32_t kReply = 1;
inline constexpr std::uint32_t kAuthNone = 0;
inline constexpr std::size_t kMaxAuthBody = 400;  // RFC 5531 opaque_auth body<400>

// Accept states (RFC 5531 accept_stat).
enum class accept_stat : std::uint32_t {
  success = 0,
  prog_unavail = 1,
  prog_mismatch = 2,
  proc_unavail = 3,
  garbage_args = 4,
  system_err = 5,
};

// A CALL message with AUTH_NONE credentials and verifier, then `args` (already XDR).
[[nodiscard]] std::string encode_call(std::uint32_t xid, std::uint32_t prog, std::uint32_t vers,
                                      std::uint32_t proc, std::string_view args);

struct call {
  std::uint32_t xid = 0;
  std::uint32_t rpcvers = 0;
  std::uint32_t prog = 0;
  std::uint32_t vers = 0;
  std::uint32_t proc = 0;
  std::string_view args;  // points into the decoded message
};
// Decodes a CALL (any credential flavour, bodies skipped). nullopt when it is not one; a call
// whose rpcvers is not 2 decodes (so the server can answer RPC_MISMATCH).
[[nodiscard]] std::optional<call> decode_call(std::string_view msg) noexcept;

// An accepted REPLY with a null verifier: `results` follow SUCCESS; PROG_MISMATCH carries the
// supported version range.
[[nodiscard]] std::string encode_accepted_reply(std::uint32_t xid, accept_stat stat,
                                                std::string_view results = {},
                                                std::uint32_t low = 0, std::uint32_t high = 0);
// A denied REPLY: RPC_MISMATCH (versions 2..2).
[[nodiscard]] std::string encode_rpc_mismatch_reply(std::uint32_t xid);

struct reply {
  std::uint32_t xid = 0;
  std::string_view results;  // SUCCESS only; points into the decoded message
};
// Decodes a REPLY to call `expected_xid`. Errors: malformed_reply, not_a_reply, xid_mismatch,
// and the rejection / non-success accept states as rpc_errc values.
[[nodiscard]] boost::system::error_code decode_reply(std::string_view msg,
                                                     std::uint32_t expected_xid,
                                                     reply& out) noexcept;

// ---- portmapper (program 100000 version 2) ---------------------------------------------------
inline constexpr std::uint32_t kPmapProgram = 100000;
inline constexpr std::uint32_t kPmapVersion = 2;
inline constexpr std::uint32_t kPmapProcNull = 0;
inline constexpr std::uint32_t kPmapProcGetport = 3;
inline constexpr std::uint32_t kIpprotoTcp = 6;
inline constexpr std::uint32_t kIpprotoUdp = 17;

struct pmap_mapping {
  std::uint32_t prog = 0, vers = 0, prot = 0, port = 0;
};
[[nodiscard]] std::string encode_mapping(const pmap_mapping& m);
[[nodiscard]] bool decode_mapping(std::string_view args, pmap_mapping& m) noexcept;
// GETPORT result: one unsigned int; 0 = not registered. Ports above 65535 fail to decode.
[[nodiscard]] bool decode_getport_result(std::string_view results, std::uint16_t& port) noexcept;

}  // namespace semilab::drivers::oncrpc

template <>
struct boost::system::is_error_code_enum<semilab::drivers::oncrpc::rpc_errc> : std::true_type {};
