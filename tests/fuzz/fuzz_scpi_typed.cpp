// Fuzz target: typed SCPI replies (numbers with sentinels, lists, booleans, *IDN?, *ESR?) and
// the poll-reply parsers of every model in the registry.
#include <cstddef>
#include <cstdint>
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/scpi_reply.hpp>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = semilab::drivers;
  static const auto settings = [] {
    std::vector<d::model_settings> out;
    for (const auto& m : d::models()) out.push_back(*d::resolve_settings(m, {}));
    return out;
  }();
  std::string_view s(reinterpret_cast<const char*>(data), size);
  (void)d::parse_number_reply(s);
  (void)d::parse_number_list(s);
  (void)d::parse_bool_reply(s);
  (void)d::parse_idn(s);
  (void)d::parse_esr_reply(s);
  std::size_t i = 0;
  for (const auto& m : d::models()) (void)m.parse(s, settings[i++]);
  return 0;
}
