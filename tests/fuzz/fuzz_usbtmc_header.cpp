// Fuzz target: USBTMC Bulk-IN header parsing and reply assembly (drivers/src/usbtmc_proto.hpp).
// Input: [0] selects wMaxPacketSize, [1] the first bTag, then reads as (length byte, bytes) pairs;
// each read is cut to what the reader asked for, as libusb would. Invariants violated: trap.
#include <cstddef>
#include <cstdint>
#include <span>

#include "usbtmc_proto.hpp"

namespace {
void require(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace semilab::drivers::usbtmc;
  if (size < 2) return 0;
  static constexpr std::size_t kPackets[] = {8, 16, 64, 512};
  const std::size_t mps = kPackets[data[0] % 4];
  const std::size_t max_reply = 300;
  btag_counter tags;
  for (int i = 0; i < data[1]; ++i) tags.next();

  bulk_in_header h;
  (void)parse_bulk_in_header({data + 2, size - 2}, data[1], h);
  (void)parse_capabilities({data + 2, size - 2});

  reply_reader r(mps, max_reply, 1000);
  std::size_t off = 2;
  for (int guard = 0; guard < 10000; ++guard) {
    auto st = r.state();
    if (st == reply_reader::step::complete || st == reply_reader::step::failed) break;
    if (st == reply_reader::step::request) {
      std::uint8_t tag = tags.next();
      require(tag != 0);
      std::uint32_t ts = r.begin_transfer(tag);
      require(ts >= 1 && ts <= 1000);
      continue;
    }
    if (off >= size) break;
    std::size_t want = r.read_size();
    require(want >= mps && want % mps == 0);
    std::size_t n = data[off++];
    n = n < size - off ? n : size - off;
    n = n < want ? n : want;
    r.feed({data + off, n});
    off += n;
    require(r.message().size() <= max_reply + 1);
  }
  if (r.state() == reply_reader::step::failed) require(r.error() != semilab::drivers::errc::ok);
  return 0;
}
