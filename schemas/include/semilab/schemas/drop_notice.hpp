#pragma once
// Drop notice: how the agent announces records it dropped, refused or lost, so central can
// account for every gap. It travels as an ordinary event record (class event, instrument
// "agent", channel "drop_notice", text value = the JSON below) inside a normal batch frame: it is
// stored in the outbox in the same transaction as the drop it describes, uploaded, acked and
// deduplicated like any record, and central stores it without knowing it (schemas/WIRE.md).
#include <semilab/schemas/frame.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::schemas {

inline constexpr std::string_view kDropNoticeInstrument = "agent";
inline constexpr std::string_view kDropNoticeChannel = "drop_notice";
// Ranges per notice at most, so the JSON stays well under kMaxTextBytes; more ranges are split
// over several notices.
inline constexpr std::size_t kDropNoticeMaxRanges = 48;

enum class drop_action : std::uint8_t {
  dropped,        // records stored, then evicted by policy (their seqs are listed)
  paused,         // intake of a class paused: records refused before they got a seq
  resumed,        // intake of a class resumed; `records` = how many were refused meanwhile
  unrecoverable,  // records of a corrupt outbox that was moved aside (another store epoch)
};
std::string_view to_string(drop_action a) noexcept;

struct drop_notice {
  drop_action action = drop_action::dropped;
  std::string reason;  // "quota", "corrupt_outbox", ...
  record_class cls = record_class::telemetry;
  std::uint64_t store_epoch = 0;   // epoch the ranges belong to (0 = unknown)
  std::vector<seq_range> ranges;   // dropped / unrecoverable seqs (sorted, disjoint)
  std::uint64_t records = 0;       // records concerned (refused, dropped or lost)
  std::int64_t first_ts_ns = 0;    // time span of the records concerned (0 = unknown)
  std::int64_t last_ts_ns = 0;
  std::string detail;              // human-readable, no secrets
};

std::string encode_drop_notice(const drop_notice& n);
result<drop_notice> decode_drop_notice(std::string_view json);
// The event record that carries `n` (seq assigned by the outbox).
record make_drop_notice_record(const drop_notice& n, std::int64_t now_ns);
bool is_drop_notice(const record& r) noexcept;

}  // namespace semilab::schemas
