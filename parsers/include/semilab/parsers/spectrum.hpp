#pragma once
// Values produced by the export-file parsers. A parser takes the whole file as bytes and returns
// either a value or a parse_error that names where (byte offset, 1-based line when the format is
// line oriented, 0 otherwise) and why. Parsers never throw and never read outside the input.
#include <boost/system/result.hpp>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace semilab::parsers {

struct parse_error {
  std::size_t offset = 0;  // byte offset into the input where the problem was found
  std::size_t line = 0;    // 1-based line for text formats, 0 for binary formats
  std::string reason;

  // "line 12 (offset 345): reason" or "offset 345: reason".
  [[nodiscard]] std::string to_string() const;
};

// Only reached if a caller uses result::value() on an error; parsers themselves never throw.
[[noreturn]] void throw_exception_from_error(const parse_error& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, parse_error>;

using metadata = std::vector<std::pair<std::string, std::string>>;

// One x axis with one or more y channels of the same length (a spectrum, a diffractogram, a scan).
struct spectrum {
  std::string format;  // "csv", "jcamp-dx", "xrdml", "vamas", "spc"
  std::string x_label;
  std::string x_unit;
  std::vector<double> x;
  std::vector<std::string> y_labels;  // one per channel
  std::vector<std::string> y_units;   // one per channel ("" when the file states none)
  std::vector<std::vector<double>> y;  // y[channel][point], each y[c].size() == x.size()
  parsers::metadata meta;              // key/value pairs as the file states them

  // First value stored under key, if any.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view key) const;
};

}  // namespace semilab::parsers
