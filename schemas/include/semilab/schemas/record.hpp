#pragma once
// A record is the unit of identity and storage: one measurement, event, run result, health
// snapshot or blob chunk. Its key is (agent_id, store_epoch, seq); see docs/ARCHITECTURE.md.
#include <semilab/schemas/error.hpp>

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <variant>

namespace semilab::schemas {

// Priority classes, highest priority first (lower number = sent first).
enum class record_class : std::uint8_t { event = 0, run_result = 1, telemetry = 2, blob = 3 };
inline constexpr int kRecordClassCount = 4;
std::string_view to_string(record_class c) noexcept;

// A decimal number exactly as the instrument reported it: "+1.234500E-03" is {12345000, -10}.
// Keeps every reported digit (trailing zeros included) and converts to double on demand.
struct decimal {
  std::int64_t mantissa = 0;
  std::int8_t exponent = 0;

  double to_double() const noexcept;
  // Canonical scientific text, e.g. "1.2345000E-03"; the digit count equals the reported one.
  std::string to_string() const;
  friend bool operator==(const decimal&, const decimal&) = default;
};

// Parses SCPI/IEEE 488.2 NR1/NR2/NR3 numbers ("+1.23E-3", "-12", " 4.5 ", "9.91E37").
// Up to 18 significant digits; more is errc::bad_value (never silently rounded).
result<decimal> parse_decimal(std::string_view text) noexcept;

// A value is a double, an exact 64-bit integer, a reported decimal, or a short text.
using value = std::variant<double, std::int64_t, decimal, std::string>;
inline constexpr std::size_t kMaxTextBytes = 4096;
double value_as_double(const value& v) noexcept;  // NaN for text

// Quality flags (bit set). Bad timestamps are flagged, never rejected.
namespace quality {
inline constexpr std::uint32_t compliance = 1u << 0;
inline constexpr std::uint32_t over_range = 1u << 1;
inline constexpr std::uint32_t clock_step = 1u << 2;
inline constexpr std::uint32_t non_traceable = 1u << 3;
inline constexpr std::uint32_t bad_timestamp = 1u << 4;
}  // namespace quality

struct record {
  std::uint64_t seq = 0;  // assigned by the outbox; strictly increasing, never reused
  record_class cls = record_class::telemetry;
  std::int64_t ts_ns = 0;  // UTC, integer nanoseconds since the Unix epoch
  std::string instrument;  // instrument id from the agent configuration
  std::string channel;     // e.g. "curr", or the event kind for events
  std::string unit;        // SI unit symbol, "" for dimensionless
  std::uint32_t quality = 0;
  value val;
  std::string run_id;  // empty when not part of a run

  friend bool operator==(const record&, const record&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const decimal& d) { return os << d.to_string(); }

}  // namespace semilab::schemas
