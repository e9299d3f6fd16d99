// Fuzz target: batch frame decoder (outside input at central).
#include <semilab/schemas/frame.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static semilab::schemas::frame_decoder dec(semilab::schemas::frame_limits{.max_frame_bytes = 1 << 20,
                                                                            .max_body_bytes = 4 << 20});
  auto f = dec.decode({data, size});
  if (f && f->records.size() != f->header.record_count) __builtin_trap();
  return 0;
}
