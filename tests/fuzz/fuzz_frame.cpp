// Fuzz target: batch frame decoder (outside input at central), with and without a dictionary:
// the decoder knows one trained dictionary of agent "lab1-agent-01" (seed-dict-* frames use it).
#include <semilab/schemas/frame.hpp>

#include <cstddef>
#include <cstdint>

#include "fuzz_frame_dict.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Lives for the whole process (reachable: not a leak for LeakSanitizer).
  static semilab::schemas::frame_decoder* dec = [] {
    auto* d = new semilab::schemas::frame_decoder(
        semilab::schemas::frame_limits{.max_frame_bytes = 1 << 20, .max_body_bytes = 4 << 20});
    auto dict = semilab::fuzz::frame_dictionary();
    if (!dict || d->add_dictionary("lab1-agent-01", *dict)) __builtin_trap();
    return d;
  }();
  auto f = dec->decode({data, size});
  if (f && f->records.size() != f->header.record_count) __builtin_trap();
  return 0;
}
