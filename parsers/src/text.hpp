#pragma once
// Private helpers shared by the text-format parsers: lines with their offsets, trimming and
// locale-independent number parsing (std::from_chars, never strtod with the process locale).
#include <semilab/parsers/spectrum.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::parsers::detail {

struct line_ref {
  std::string_view text;  // without the line terminator
  std::size_t offset;     // byte offset of text in the input
  std::size_t number;     // 1-based
};

// Splits on \n, strips a trailing \r; a UTF-8 BOM at the start is skipped.
std::vector<line_ref> split_lines(std::string_view bytes);

std::string_view trim(std::string_view s) noexcept;
std::string to_upper(std::string_view s);

// Whole-field number: optional sign, digits, '.', exponent; leading '+' accepted; surrounding
// blanks ignored. decimal_comma: ',' is the decimal separator instead of '.'. Non-finite -> none.
std::optional<double> parse_double(std::string_view s, bool decimal_comma = false) noexcept;
std::optional<long long> parse_int(std::string_view s) noexcept;

parse_error error_at(const line_ref& l, std::string reason);
parse_error error_at(std::size_t offset, std::string reason);

}  // namespace semilab::parsers::detail
