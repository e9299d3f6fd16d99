#include "oncrpc.hpp"

#include <algorithm>

namespace semilab::drivers::oncrpc {
namespace {

class rpc_category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "oncrpc"; }
  std::string message(int ev) const override {
    switch (static_cast<rpc_errc>(ev)) {
      case rpc_errc::ok: return "ok";
      case rpc_errc::malformed_record: return "ONC RPC: malformed record marking";
      case rpc_errc::record_too_long: return "ONC RPC: record longer than allowed";
      case rpc_errc::malformed_reply: return "ONC RPC: malformed reply";
      case rpc_errc::not_a_reply: return "ONC RPC: message is not a reply";
      case rpc_errc::xid_mismatch: return "ONC RPC: reply to another call (xid mismatch)";
      case rpc_errc::rpc_mismatch: return "ONC RPC: server rejected RPC version 2";
      case rpc_errc::auth_error: return "ONC RPC: server rejected the credentials";
      case rpc_errc::prog_unavail: return "ONC RPC: program not available at this port";
      case rpc_errc::prog_mismatch: return "ONC RPC: program version not supported";
      case rpc_errc::proc_unavail: return "ONC RPC: procedure not available";
      case rpc_errc::garbage_args: return "ONC RPC: server could not decode the arguments";
      case rpc_errc::system_err: return "ONC RPC: server system error";
    }
    return "ONC RPC: unknown error";
  }
};

void put_be32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xFFu));
  out.push_back(static_cast<char>((v >> 16) & 0xFFu));
  out.push_back(static_cast<char>((v >> 8) & 0xFFu));
  out.push_back(static_cast<char>(v & 0xFFu));
}

std::uint32_t get_be32(const char* p) noexcept {
  auto b = [p](int i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

// Skips an opaque_auth (flavor + body<400>).
bool skip_auth(xdr_reader& r) noexcept {
  std::uint32_t flavor = 0;
  std::string_view body;
  return r.u32(flavor) && r.opaque(body, kMaxAuthBody);
}

}  // namespace

const boost::system::error_category& rpc_category() noexcept {
  static const rpc_category_impl kCategory;
  return kCategory;
}

// ---- XDR ----------------------------------------------------------------------------------

void xdr_writer::u32(std::uint32_t v) { put_be32(out_, v); }

void xdr_writer::opaque(std::string_view bytes) {
  u32(static_cast<std::uint32_t>(bytes.size()));
  out_.append(bytes);
  out_.append((4 - bytes.size() % 4) % 4, '\0');
}

bool xdr_reader::u32(std::uint32_t& v) noexcept {
  if (failed_ || remaining() < 4) return !(failed_ = true);
  v = get_be32(in_.data() + pos_);
  pos_ += 4;
  return true;
}

bool xdr_reader::i32(std::int32_t& v) noexcept {
  std::uint32_t u = 0;
  if (!u32(u)) return false;
  v = static_cast<std::int32_t>(u);
  return true;
}

bool xdr_reader::boolean(bool& v) noexcept {
  std::uint32_t u = 0;
  if (!u32(u)) return false;
  if (u > 1) return !(failed_ = true);
  v = u == 1;
  return true;
}

bool xdr_reader::opaque(std::string_view& v, std::size_t max) noexcept {
  std::uint32_t len = 0;
  if (!u32(len)) return false;
  // Compare before adding the padding: len + 3 cannot overflow size_t, but stay explicit.
  if (len > max || len > remaining()) return !(failed_ = true);
  std::size_t padded = static_cast<std::size_t>(len) + (4 - len % 4) % 4;
  if (padded > remaining()) return !(failed_ = true);
  v = in_.substr(pos_, len);
  pos_ += padded;
  return true;
}

// ---- record marking -------------------------------------------------------------------------

std::string frame_record(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 4);
  do {
    std::size_t n = std::min<std::size_t>(payload.size(), kMaxFragment);
    bool last = n == payload.size();
    put_be32(out, static_cast<std::uint32_t>(n) | (last ? kLastFragment : 0u));
    out.append(payload.substr(0, n));
    payload.remove_prefix(n);
  } while (!payload.empty());
  return out;
}

record_assembler::status record_assembler::next(std::string& record) {
  if (failed_) return status::too_long;
  auto compact = [this] {
    if (pos_ == buf_.size()) {
      buf_.clear();
      pos_ = 0;
    } else if (pos_ >= 64 * 1024) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
  };
  for (;;) {
    if (buffered() < 4) {
      compact();
      return status::need_more;
    }
    std::uint32_t header = get_be32(buf_.data() + pos_);
    bool last = (header & kLastFragment) != 0;
    std::size_t len = header & kMaxFragment;
    // Checked at the header, before the fragment arrives: a peer announcing 2 GiB is refused
    // without buffering anything.
    if (len > max_ || partial_.size() > max_ - len) {
      failed_ = true;
      return status::too_long;
    }
    if (buffered() - 4 < len) {
      compact();
      return status::need_more;
    }
    partial_.append(buf_, pos_ + 4, len);
    pos_ += 4 + len;
    if (last) {
      record = std::move(partial_);
      partial_.clear();
      compact();
      return status::complete;
    }
  }
}

void record_assembler::reset() noexcept {
  buf_.clear();
  partial_.clear();
  pos_ = 0;
  failed_ = false;
}

// ---- messages -----------------------------------------------------------------------------

std::string encode_call(std::uint32_t xid, std::uint32_t prog, std::uint32_t vers,
                        std::uint32_t proc, std::string_view args) {
  std::string out;
  out.reserve(40 + args.size());
  xdr_writer w(out);
  w.u32(xid);
  w.u32(kCall);
  w.u32(kRpcVersion);
  w.u32(prog);
  w.u32(vers);
  w.u32(proc);
  w.u32(kAuthNone);  // credentials
  w.u32(0);
  w.u32(kAuthNone);  // verifier
  w.u32(0);
  out.append(args);
  return out;
}

std::optional<call> decode_call(std::string_view msg) noexcept {
  xdr_reader r(msg);
  call c;
  std::uint32_t type = 0;
  if (!r.u32(c.xid) || !r.u32(type) || type != kCall || !r.u32(c.rpcvers) || !r.u32(c.prog) ||
      !r.u32(c.vers) || !r.u32(c.proc) || !skip_auth(r) || !skip_auth(r))
    return std::nullopt;
  c.args = msg.substr(msg.size() - r.remaining());
  return c;
}

std::string encode_accepted_reply(std::uint32_t xid, accept_stat stat, std::string_view results,
                                  std::uint32_t low, std::uint32_t high) {
  std::string out;
  xdr_writer w(out);
  w.u32(xid);
  w.u32(kReply);
  w.u32(0);  // MSG_ACCEPTED
  w.u32(kAuthNone);
  w.u32(0);
  w.u32(static_cast<std::uint32_t>(stat));
  if (stat == accept_stat::success) out.append(results);
  if (stat == accept_stat::prog_mismatch) {
    w.u32(low);
    w.u32(high);
  }
  return out;
}

std::string encode_rpc_mismatch_reply(std::uint32_t xid) {
  std::string out;
  xdr_writer w(out);
  w.u32(xid);
  w.u32(kReply);
  w.u32(1);  // MSG_DENIED
  w.u32(0);  // RPC_MISMATCH
  w.u32(kRpcVersion);
  w.u32(kRpcVersion);
  return out;
}

boost::system::error_code decode_reply(std::string_view msg, std::uint32_t expected_xid,
                                       reply& out) noexcept {
  xdr_reader r(msg);
  std::uint32_t type = 0, stat = 0;
  if (!r.u32(out.xid) || !r.u32(type)) return rpc_errc::malformed_reply;
  if (type != kReply) return rpc_errc::not_a_reply;
  if (out.xid != expected_xid) return rpc_errc::xid_mismatch;
  if (!r.u32(stat)) return rpc_errc::malformed_reply;
  if (stat == 1) {  // MSG_DENIED
    std::uint32_t reject = 0;
    if (!r.u32(reject)) return rpc_errc::malformed_reply;
    if (reject == 0) return rpc_errc::rpc_mismatch;
    if (reject == 1) return rpc_errc::auth_error;
    return rpc_errc::malformed_reply;
  }
  if (stat != 0) return rpc_errc::malformed_reply;
  std::uint32_t accept = 0;
  if (!skip_auth(r) || !r.u32(accept)) return rpc_errc::malformed_reply;
  switch (static_cast<accept_stat>(accept)) {
    case accept_stat::success:
      out.results = msg.substr(msg.size() - r.remaining());
      return {};
    case accept_stat::prog_unavail: return rpc_errc::prog_unavail;
    case accept_stat::prog_mismatch: return rpc_errc::prog_mismatch;
    case accept_stat::proc_unavail: return rpc_errc::proc_unavail;
    case accept_stat::garbage_args: return rpc_errc::garbage_args;
    case accept_stat::system_err: return rpc_errc::system_err;
  }
  return rpc_errc::malformed_reply;
}

// ---- portmapper ---------------------------------------------------------------------------

std::string encode_mapping(const pmap_mapping& m) {
  std::string out;
  xdr_writer w(out);
  w.u32(m.prog);
  w.u32(m.vers);
  w.u32(m.prot);
  w.u32(m.port);
  return out;
}

bool decode_mapping(std::string_view args, pmap_mapping& m) noexcept {
  xdr_reader r(args);
  return r.u32(m.prog) && r.u32(m.vers) && r.u32(m.prot) && r.u32(m.port);
}

bool decode_getport_result(std::string_view results, std::uint16_t& port) noexcept {
  xdr_reader r(results);
  std::uint32_t p = 0;
  if (!r.u32(p) || p > 0xFFFFu) return false;
  port = static_cast<std::uint16_t>(p);
  return true;
}

}  // namespace semilab::drivers::oncrpc
