#pragma once
// IEEE 488.2 / SCPI response parsing: message framing with definite (#<n><len>) and indefinite
// (#0) arbitrary blocks, and typed replies (numbers keeping their digits, the 9.9E37 over-range
// and 9.91E37 not-a-number sentinels, booleans, lists, *IDN? fields, *ESR? bits).
// Every function takes outside input: none throws or crashes; errors are errc::bad_reply with
// the reply quoted (quote_reply) and, where given, `what` naming the query.
#include <cstddef>
#include <cstdint>
#include <semilab/drivers/error.hpp>
#include <semilab/schemas/record.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::drivers {

// Finds the end of one response message in a byte stream. Terminator bytes inside a definite
// block's data do not end the message; "#0" (indefinite block) data runs to the terminator, as
// on a raw socket NL is the only END. '#' followed by H, Q or B is a non-decimal number, not a
// block. Feed the whole buffer each time (it only grows); scanning resumes where it stopped.
class reply_framer {
 public:
  enum class status { need_more, complete, too_long };
  explicit reply_framer(char terminator = '\n', std::size_t max_bytes = 1 << 20) noexcept
      : term_(terminator), max_(max_bytes) {}
  // After `complete`: message_size() bytes are the message (without the terminator), the
  // terminator is at index message_size(). `too_long`: the message (or a block's declared
  // length) exceeds max_bytes.
  [[nodiscard]] status feed(std::string_view buffer) noexcept;
  [[nodiscard]] std::size_t message_size() const noexcept { return end_; }
  // True when the byte before the terminator is a CR outside block data (a "\r\n" terminator).
  [[nodiscard]] bool cr_before_terminator() const noexcept { return cr_; }
  [[nodiscard]] std::size_t blocks() const noexcept { return blocks_; }

 private:
  enum class state { text, hash, length, data };
  char term_;
  std::size_t max_;
  std::size_t pos_ = 0;
  state st_ = state::text;
  bool element_start_ = true;
  unsigned digits_ = 0;        // length digits still to read
  std::size_t remaining_ = 0;  // block bytes still to skip (or the length being accumulated)
  std::size_t end_ = 0;
  bool cr_ = false;
  bool last_text_cr_ = false;
  std::size_t blocks_ = 0;
};

// A number as reported. quality carries schemas::quality::over_range for +-9.9E37 (over-range)
// and for 9.91E37 (not a number: nothing measured); `not_a_number` tells the two apart.
struct scpi_number {
  schemas::decimal value;
  std::uint32_t quality = 0;
  bool not_a_number = false;
};
inline constexpr double kScpiOverRange = 9.9e37;
inline constexpr double kScpiNotANumber = 9.91e37;

[[nodiscard]] result<scpi_number> parse_number_reply(std::string_view reply,
                                                     std::string_view what = "reply");
// 1/0/ON/OFF (any case, optional '+').
[[nodiscard]] result<bool> parse_bool_reply(std::string_view reply,
                                            std::string_view what = "reply");
// Splits at ',' outside quoted strings and outside blocks; elements trimmed. An empty reply is
// an empty list.
[[nodiscard]] result<std::vector<std::string>> split_reply_list(std::string_view reply,
                                                                std::string_view what = "reply");
[[nodiscard]] result<std::vector<scpi_number>> parse_number_list(std::string_view reply,
                                                                 std::string_view what = "reply");

struct idn_fields {
  std::string manufacturer, model, serial, firmware;
  friend bool operator==(const idn_fields&, const idn_fields&) = default;
};
// Four comma-separated fields (firmware may itself contain commas on some instruments: the
// rest of the reply after the third comma is the firmware field).
[[nodiscard]] result<idn_fields> parse_idn(std::string_view reply);

// The reply as one arbitrary block: "#<n><len><data>" (data of exactly len bytes, any byte
// values) or "#0<data>". Returns the data.
[[nodiscard]] result<std::string> parse_block(std::string_view reply,
                                              std::string_view what = "reply");

// *ESR? (standard event status register).
struct esr_bits {
  unsigned value = 0;
  [[nodiscard]] bool operation_complete() const noexcept { return value & 1u; }
  [[nodiscard]] bool request_control() const noexcept { return value & 2u; }
  [[nodiscard]] bool query_error() const noexcept { return value & 4u; }
  [[nodiscard]] bool device_error() const noexcept { return value & 8u; }
  [[nodiscard]] bool execution_error() const noexcept { return value & 16u; }
  [[nodiscard]] bool command_error() const noexcept { return value & 32u; }
  [[nodiscard]] bool user_request() const noexcept { return value & 64u; }
  [[nodiscard]] bool power_on() const noexcept { return value & 128u; }
  // "PON,CME" style list of set bits; "none" when zero.
  [[nodiscard]] std::string describe() const;
};
[[nodiscard]] result<esr_bits> parse_esr_reply(std::string_view reply);

}  // namespace semilab::drivers
