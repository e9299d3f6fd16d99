#pragma once
// Bounds-checked little/big-endian reads over a byte view (binary formats: SPC, TIFF).
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace semilab::parsers::detail {

struct reader {
  std::string_view b;
  bool big = false;

  [[nodiscard]] bool has(std::uint64_t off, std::uint64_t n) const noexcept { return off <= b.size() && n <= b.size() - off; }
  template <class T>
  [[nodiscard]] std::optional<T> get(std::uint64_t off) const noexcept {
    if (!has(off, sizeof(T))) return std::nullopt;
    unsigned char raw[sizeof(T)];
    std::memcpy(raw, b.data() + off, sizeof(T));
    if (big) {
      for (std::size_t i = 0; i < sizeof(T) / 2; ++i) {
        unsigned char t = raw[i];
        raw[i] = raw[sizeof(T) - 1 - i];
        raw[sizeof(T) - 1 - i] = t;
      }
    }
    T v;
    std::memcpy(&v, raw, sizeof(T));
    return v;
  }
};

}  // namespace semilab::parsers::detail
