// Fuzz target: what a VXI-11 client and server read from the network. The input is a TCP byte
// stream of ONC RPC records (record marking) cut into reads of varying size; every record is
// decoded as a reply (to the xid it names, and to another one), as a call, and as each VXI-11
// result and parameter structure the transport and the simulator decode. Nothing may crash,
// read out of bounds or grow beyond the assembler's limit.
#include "oncrpc.hpp"
#include "vxi11_proto.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rpc = semilab::drivers::oncrpc;
namespace vx = semilab::drivers::vxi11;

namespace {

void decode_everything(std::string_view rec) {
  rpc::reply r;
  std::uint32_t xid = 0;
  if (rec.size() >= 4)
    xid = (static_cast<std::uint32_t>(static_cast<unsigned char>(rec[0])) << 24) |
          (static_cast<std::uint32_t>(static_cast<unsigned char>(rec[1])) << 16) |
          (static_cast<std::uint32_t>(static_cast<unsigned char>(rec[2])) << 8) |
          static_cast<std::uint32_t>(static_cast<unsigned char>(rec[3]));
  (void)rpc::decode_reply(rec, xid + 1, r);
  std::string_view results = rec;
  if (!rpc::decode_reply(rec, xid, r)) results = r.results;
  std::uint16_t port = 0;
  (void)rpc::decode_getport_result(results, port);
  vx::create_link_resp cl;
  (void)vx::decode(results, cl);
  vx::device_write_resp wr;
  (void)vx::decode(results, wr);
  vx::device_read_resp rd;
  if (vx::decode(results, rd, 1 << 16) && !rd.data.empty())
    (void)(rd.data.front() == rd.data.back());  // touch both ends of the view
  vx::device_readstb_resp st;
  (void)vx::decode(results, st);
  vx::device_error_resp de;
  (void)vx::decode(results, de);

  if (auto c = rpc::decode_call(rec)) {
    rpc::pmap_mapping m;
    (void)rpc::decode_mapping(c->args, m);
    vx::create_link_parms cp;
    if (vx::decode(c->args, cp) && !cp.device.empty()) (void)cp.device.back();
    vx::device_write_parms wp;
    if (vx::decode(c->args, wp, 1 << 16) && !wp.data.empty()) (void)wp.data.back();
    vx::device_read_parms rp;
    (void)vx::decode(c->args, rp);
    vx::generic_parms gp;
    (void)vx::decode(c->args, gp);
    std::int32_t lid = 0;
    (void)vx::decode_link(c->args, lid);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // First byte: read size (1..256) for the stream; the rest is the stream.
  const std::size_t step = static_cast<std::size_t>(data[0]) + 1;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  rpc::record_assembler a(4096);
  std::string rec;
  for (std::size_t off = 0; off < in.size(); off += step) {
    a.feed(in.substr(off, step));
    for (;;) {
      auto st = a.next(rec);
      if (st != rpc::record_assembler::status::complete) break;
      if (rec.size() > 4096) __builtin_trap();  // the limit holds
      decode_everything(rec);
    }
  }
  // The whole input as one record too (decoders see unframed bytes).
  decode_everything(in);
  return 0;
}
