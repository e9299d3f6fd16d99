#pragma once
// The dictionary the frame fuzz target knows (and its seed-dict-* corpus files were compressed
// with): trained deterministically from synthetic telemetry.
#include <semilab/schemas/frame.hpp>

#include <string>
#include <vector>

namespace semilab::fuzz {

inline std::vector<schemas::record> frame_dictionary_records(std::size_t n, std::uint64_t first_seq) {
  std::vector<schemas::record> out;
  const char* ch[] = {"curr", "volt", "temp", "res"};
  std::uint64_t x = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    schemas::record r;
    r.seq = first_seq + i;
    r.ts_ns = 1'764'250'001'000'000'000 + static_cast<std::int64_t>(i) * 25'000'000 +
              static_cast<std::int64_t>(x >> 44);
    r.instrument = i % 8 < 4 ? "smu1" : "dmm2";
    r.channel = ch[i % 4];
    r.unit = "A";
    r.val = schemas::decimal{static_cast<std::int64_t>(1'234'500 + (i % 4) * 1'000'000 + (x >> 54)), -9};
    out.push_back(std::move(r));
  }
  return out;
}

inline schemas::result<schemas::zstd_dictionary> frame_dictionary() {
  return schemas::train_dictionary(frame_dictionary_records(2000, 1), 16, 4096);
}

}  // namespace semilab::fuzz
