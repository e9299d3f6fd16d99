#include "vxi11_proto.hpp"

namespace semilab::drivers::vxi11 {
namespace {

class category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "vxi11"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::syntax_error: return "VXI-11 error 1: syntax error";
      case errc::device_not_accessible: return "VXI-11 error 3: device not accessible";
      case errc::invalid_link_identifier: return "VXI-11 error 4: invalid link identifier";
      case errc::parameter_error: return "VXI-11 error 5: parameter error (e.g. unknown device name)";
      case errc::channel_not_established: return "VXI-11 error 6: channel not established";
      case errc::operation_not_supported: return "VXI-11 error 8: operation not supported";
      case errc::out_of_resources: return "VXI-11 error 9: out of resources";
      case errc::device_locked_by_another_link:
        return "VXI-11 error 11: device locked by another link";
      case errc::no_lock_held_by_this_link: return "VXI-11 error 12: no lock held by this link";
      case errc::io_timeout: return "VXI-11 error 15: I/O timeout";
      case errc::io_error: return "VXI-11 error 17: I/O error";
      case errc::invalid_address: return "VXI-11 error 21: invalid address";
      case errc::abort: return "VXI-11 error 23: abort";
      case errc::channel_already_established:
        return "VXI-11 error 29: channel already established";
      case errc::portmapper_unreachable:
        return "VXI-11: portmapper unreachable (no RPC portmapper on the host's port; wrong host, "
               "or not a VXI-11 instrument)";
      case errc::core_not_registered:
        return "VXI-11: the portmapper knows no core channel (program 0x0607AF v1 over TCP)";
      case errc::core_unreachable: return "VXI-11: core channel port given by the portmapper unreachable";
      case errc::bad_reply: return "VXI-11: malformed or inconsistent result from the instrument";
    }
    return "VXI-11 error " + std::to_string(ev) + ": unknown VXI-11 device error";
  }
};

using oncrpc::xdr_reader;
using oncrpc::xdr_writer;

}  // namespace

const boost::system::error_category& category() noexcept {
  static const category_impl kCategory;
  return kCategory;
}

// ---- parameters -----------------------------------------------------------------------------

std::string encode(const create_link_parms& p) {
  std::string out;
  xdr_writer w(out);
  w.i32(p.client_id);
  w.boolean(p.lock_device);
  w.u32(p.lock_timeout);
  w.opaque(p.device);
  return out;
}

std::string encode(const device_write_parms& p) {
  std::string out;
  out.reserve(24 + p.data.size());
  xdr_writer w(out);
  w.i32(p.lid);
  w.u32(p.io_timeout);
  w.u32(p.lock_timeout);
  w.i32(p.flags);
  w.opaque(p.data);
  return out;
}

std::string encode(const device_read_parms& p) {
  std::string out;
  xdr_writer w(out);
  w.i32(p.lid);
  w.u32(p.request_size);
  w.u32(p.io_timeout);
  w.u32(p.lock_timeout);
  w.i32(p.flags);
  // XDR char: a 4-byte int holding the (signed) char value.
  w.i32(static_cast<std::int32_t>(static_cast<signed char>(p.term_char)));
  return out;
}

std::string encode(const generic_parms& p) {
  std::string out;
  xdr_writer w(out);
  w.i32(p.lid);
  w.i32(p.flags);
  w.u32(p.lock_timeout);
  w.u32(p.io_timeout);
  return out;
}

std::string encode_link(std::int32_t lid) {
  std::string out;
  xdr_writer(out).i32(lid);
  return out;
}

bool decode(std::string_view in, create_link_parms& p, std::size_t max_device) noexcept {
  xdr_reader r(in);
  return r.i32(p.client_id) && r.boolean(p.lock_device) && r.u32(p.lock_timeout) &&
         r.opaque(p.device, max_device);
}

bool decode(std::string_view in, device_write_parms& p, std::size_t max_data) noexcept {
  xdr_reader r(in);
  return r.i32(p.lid) && r.u32(p.io_timeout) && r.u32(p.lock_timeout) && r.i32(p.flags) &&
         r.opaque(p.data, max_data);
}

bool decode(std::string_view in, device_read_parms& p) noexcept {
  xdr_reader r(in);
  std::int32_t tc = 0;
  if (!(r.i32(p.lid) && r.u32(p.request_size) && r.u32(p.io_timeout) && r.u32(p.lock_timeout) &&
        r.i32(p.flags) && r.i32(tc)))
    return false;
  // Senders differ in sign-extending a char above 0x7F: accept both spellings of a byte.
  if (tc < -128 || tc > 255) return false;
  p.term_char = static_cast<char>(static_cast<unsigned char>(tc & 0xFF));
  return true;
}

bool decode(std::string_view in, generic_parms& p) noexcept {
  xdr_reader r(in);
  return r.i32(p.lid) && r.i32(p.flags) && r.u32(p.lock_timeout) && r.u32(p.io_timeout);
}

bool decode_link(std::string_view in, std::int32_t& lid) noexcept {
  xdr_reader r(in);
  return r.i32(lid);
}

// ---- results --------------------------------------------------------------------------------

std::string encode(const create_link_resp& r) {
  std::string out;
  xdr_writer w(out);
  w.i32(r.error);
  w.i32(r.lid);
  w.u32(r.abort_port);
  w.u32(r.max_recv_size);
  return out;
}

std::string encode(const device_write_resp& r) {
  std::string out;
  xdr_writer w(out);
  w.i32(r.error);
  w.u32(r.size);
  return out;
}

std::string encode(const device_read_resp& r) {
  std::string out;
  out.reserve(12 + r.data.size() + 3);
  xdr_writer w(out);
  w.i32(r.error);
  w.i32(r.reason);
  w.opaque(r.data);
  return out;
}

std::string encode(const device_readstb_resp& r) {
  std::string out;
  xdr_writer w(out);
  w.i32(r.error);
  w.u32(r.stb);
  return out;
}

std::string encode(const device_error_resp& r) {
  std::string out;
  xdr_writer(out).i32(r.error);
  return out;
}

bool decode(std::string_view in, create_link_resp& r) noexcept {
  xdr_reader x(in);
  return x.i32(r.error) && x.i32(r.lid) && x.u32(r.abort_port) && r.abort_port <= 0xFFFFu &&
         x.u32(r.max_recv_size);
}

bool decode(std::string_view in, device_write_resp& r) noexcept {
  xdr_reader x(in);
  return x.i32(r.error) && x.u32(r.size);
}

bool decode(std::string_view in, device_read_resp& r, std::size_t max_data) noexcept {
  xdr_reader x(in);
  return x.i32(r.error) && x.i32(r.reason) && x.opaque(r.data, max_data);
}

bool decode(std::string_view in, device_readstb_resp& r) noexcept {
  xdr_reader x(in);
  std::uint32_t stb = 0;
  if (!x.i32(r.error) || !x.u32(stb) || stb > 0xFFu) return false;
  r.stb = static_cast<std::uint8_t>(stb);
  return true;
}

bool decode(std::string_view in, device_error_resp& r) noexcept {
  xdr_reader x(in);
  return x.i32(r.error);
}

}  // namespace semilab::drivers::vxi11
