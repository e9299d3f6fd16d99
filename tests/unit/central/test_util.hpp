#pragma once
// Helpers shared by the central tests: temp directories and sample frames.
#include <semilab/schemas/frame.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace central_test {

// A fresh directory under /tmp, removed with its content when the object dies.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "semilab-central-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// `n` records of every value kind, seqs first_seq, first_seq+1, ...
inline semilab::schemas::batch sample_batch(std::string agent, std::uint64_t epoch,
                                            std::uint64_t batch_id, std::uint64_t first_seq,
                                            std::size_t n) {
  using namespace semilab::schemas;
  batch b;
  b.agent_id = std::move(agent);
  b.store_epoch = epoch;
  b.batch_id = batch_id;
  for (std::size_t i = 0; i < n; ++i) {
    record r;
    r.seq = first_seq + i;
    r.cls = record_class::telemetry;
    r.ts_ns = 1'764'250'001'000'000'000 + static_cast<std::int64_t>(i);
    r.instrument = "smu1";
    r.channel = "curr";
    r.unit = "A";
    switch (i % 4) {
      case 0: r.val = 1.5 * static_cast<double>(i); break;
      case 1: r.val = static_cast<std::int64_t>(-(1ll << 60)); break;
      case 2: r.val = decimal{12345000, -10}; break;
      default: r.val = std::string("text");
    }
    if (i % 2) r.run_id = "run-1";
    b.records.push_back(r);
  }
  return b;
}

inline std::string encode(const semilab::schemas::batch& b) {
  semilab::schemas::frame_encoder enc;
  auto f = enc.encode(b);
  if (!f) return {};
  return std::string(f->begin(), f->end());
}

}  // namespace central_test
