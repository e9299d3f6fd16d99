#pragma once
// The batch every wire vector of tests/upgrade/vectors carries. Compiled into the generator
// against each release's schemas/ (gen_vectors.sh) and into upgrade_wire_test against the
// current one, so it uses only what every release had: keep it that way.
#include <semilab/schemas/ack.hpp>
#include <semilab/schemas/frame.hpp>

#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>

namespace upgrade_vectors {

inline constexpr const char* kAgent = "lab1-agent-01";
inline constexpr std::uint64_t kEpoch = 12297829382473034410ull;  // above INT64_MAX
inline constexpr std::uint64_t kBatchId = 1795799439897825ull;

// Every value kind, class, quality flag and a run id; sparse seqs (classes interleave), seqs and
// timestamps beyond 2^53, a timestamp before the previous one (a clock step).
inline semilab::schemas::batch canonical_batch() {
  using namespace semilab::schemas;
  batch b;
  b.agent_id = kAgent;
  b.store_epoch = kEpoch;
  b.batch_id = kBatchId;
  const std::uint64_t s0 = (1ull << 53) + 1;
  const std::int64_t t0 = 1'764'250'001'223'431'000;
  auto add = [&](std::uint64_t seq, record_class c, std::int64_t ts, const char* inst,
                 const char* ch, const char* unit, value v, std::uint32_t q, const char* run) {
    record r;
    r.seq = seq;
    r.cls = c;
    r.ts_ns = ts;
    r.instrument = inst;
    r.channel = ch;
    r.unit = unit;
    r.val = std::move(v);
    r.quality = q;
    r.run_id = run;
    b.records.push_back(std::move(r));
  };
  add(s0, record_class::event, t0, "smu1", "state", "", std::string("connected"), 0, "");
  add(s0 + 1, record_class::telemetry, t0 + 1000, "smu1", "curr", "A", decimal{12345000, -10},
      quality::compliance, "");
  add(s0 + 2, record_class::telemetry, t0 + 2000, "smu1", "curr", "A", decimal{-12345000, -10}, 0, "");
  add(s0 + 5, record_class::run_result, t0 + 3000, "smu1", "vth", "V", 0.41999999999999998,
      0, "run-2026-11-27-001");
  add(s0 + 6, record_class::telemetry, t0 - 5'000'000'000, "plc1", "count", "",
      std::int64_t{9007199254740993}, quality::clock_step | quality::bad_timestamp, "");
  add(s0 + 7, record_class::telemetry, t0 + 4000, "plc1", "min", "", std::int64_t{INT64_MIN}, 0, "");
  add(s0 + 9, record_class::blob, t0 + 5000, "xrd1", "export", "",
      std::string("chunk 0/1 of scan-\xc2\xb5m.xrdml"), quality::non_traceable, "run-2026-11-27-001");
  for (int i = 0; i < 40; ++i)  // enough repetition for zstd to matter
    add(s0 + 10 + static_cast<std::uint64_t>(i), record_class::telemetry, t0 + 6000 + i * 1000,
        "smu1", "volt", "V", 1.0 + i * 0.125, 0, "");
  return b;
}

inline semilab::schemas::ack stored_ack() {
  semilab::schemas::ack a;
  a.agent_id = kAgent;
  a.store_epoch = kEpoch;
  a.batch_id = kBatchId;
  a.stored = true;
  a.ranges = {{(1ull << 53) + 1, (1ull << 53) + 3}, {(1ull << 53) + 6, (1ull << 53) + 49}};
  a.central_instance = "central-1";
  return a;
}

inline semilab::schemas::ack rejected_ack(semilab::schemas::reject_code c, bool retry) {
  semilab::schemas::ack a;
  a.agent_id = kAgent;
  a.store_epoch = kEpoch;
  a.batch_id = kBatchId;
  a.stored = false;
  a.code = c;
  a.retry = retry;
  a.reason = "vector";
  a.central_instance = "central-1";
  return a;
}

// A digest of decoded records, the same in every release (fields in a fixed text form).
inline std::string digest(const std::vector<semilab::schemas::record>& rs) {
  std::ostringstream s;
  for (const auto& r : rs) {
    s << r.seq << '|' << static_cast<int>(r.cls) << '|' << r.ts_ns << '|' << r.instrument << '|'
      << r.channel << '|' << r.unit << '|' << r.quality << '|' << r.run_id << '|' << r.val.index()
      << '|';
    switch (r.val.index()) {
      case 0: {
        char b[40];
        std::snprintf(b, sizeof b, "%a", std::get<double>(r.val));
        s << b;
        break;
      }
      case 1: s << std::get<std::int64_t>(r.val); break;
      case 2: s << std::get<semilab::schemas::decimal>(r.val).mantissa << 'e' << int(std::get<semilab::schemas::decimal>(r.val).exponent); break;
      default: s << std::get<std::string>(r.val);
    }
    s << '\n';
  }
  auto t = s.str();
  unsigned char d[32];
  unsigned n = 0;
  EVP_Digest(t.data(), t.size(), d, &n, EVP_sha256(), nullptr);
  return semilab::schemas::to_hex(std::span<const std::uint8_t>(d, 8));
}

}  // namespace upgrade_vectors
