// Fuzz target: decoding register frames (the register contents a device sends are outside
// input). The first bytes choose a point (type, word order, bit, string length, scale, offset),
// the rest are the registers, as the session cuts them out of a read reply. Checked: no crash,
// exact integers survive decode -> encode (the same words) and decode -> text -> parse_value.
#include <semilab/drivers/modbus_map.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <variant>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mb = semilab::drivers::modbus;
  if (size < 4) return 0;
  static constexpr std::array<double, 6> kScale = {1.0, 0.1, 0.01, -2.5, 1e-300, 1e300};
  static constexpr std::array<double, 4> kOffset = {0.0, -10.0, 273.15, 1e308};
  mb::point p;
  p.name = "x";
  p.type = static_cast<mb::value_type>(data[0] % 10);
  p.order = static_cast<mb::word_order>((data[1] >> 4) % 4);
  if (p.type == mb::value_type::boolean) p.bit = data[1] & 15u;
  if (p.type == mb::value_type::string) p.length = 1u + (data[1] & 15u);
  if (p.type != mb::value_type::boolean && p.type != mb::value_type::string) {
    p.scale = kScale[data[2] % kScale.size()];
    p.offset = kOffset[data[3] % kOffset.size()];
  }
  std::vector<std::uint16_t> regs;
  for (std::size_t i = 4; i + 1 < size; i += 2)
    regs.push_back(static_cast<std::uint16_t>(data[i] << 8 | data[i + 1]));
  (void)mb::decode(p, regs);  // any register count: a short or long frame is an error, not a crash
  regs.resize(p.count());
  auto v = mb::decode(p, regs);
  if (!v) return 0;
  auto text = mb::to_text(*v);
  (void)mb::as_double(*v);
  if (p.type == mb::value_type::boolean || p.type == mb::value_type::string) {
    (void)mb::encode(p, *v);
    return 0;
  }
  auto words = mb::encode(p, *v);
  if (p.exact_integer()) {
    if (!words || *words != regs) std::abort();
    auto back = mb::parse_value(p, text);
    if (!back || *back != *v) std::abort();
  }
  return 0;
}
