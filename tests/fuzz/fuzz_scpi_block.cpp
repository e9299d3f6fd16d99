// Fuzz target: IEEE 488.2 response framing (reply_framer fed whole and in pieces must agree),
// arbitrary-block parsing and list splitting. Invariants violated here are bugs: trap.
#include <cstddef>
#include <cstdint>
#include <semilab/drivers/scpi_reply.hpp>
#include <string_view>

namespace {
void require(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using semilab::drivers::reply_framer;
  std::string_view s(reinterpret_cast<const char*>(data), size);
  reply_framer whole('\n', 4096);
  auto st = whole.feed(s);
  if (st == reply_framer::status::complete) {
    require(whole.message_size() < s.size());
    require(s[whole.message_size()] == '\n');
  }
  // Byte by byte: the same verdict and the same message end.
  reply_framer pieces('\n', 4096);
  auto st2 = reply_framer::status::need_more;
  for (std::size_t n = 1; n <= s.size() && st2 == reply_framer::status::need_more; ++n)
    st2 = pieces.feed(s.substr(0, n));
  require(st2 == st);
  if (st == reply_framer::status::complete) require(pieces.message_size() == whole.message_size());

  auto block = semilab::drivers::parse_block(s);
  if (block) require(block->size() <= s.size());
  (void)semilab::drivers::split_reply_list(s);
  return 0;
}
