// Fuzz target: the Keithley 2450 poll reply parser and SCPI error-queue entries.
#include <semilab/drivers/model.hpp>
#include <semilab/drivers/visa_resource.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto settings =
      *semilab::drivers::resolve_settings(*semilab::drivers::find_model("keithley2450"), {});
  std::string_view s(reinterpret_cast<const char*>(data), size);
  (void)semilab::drivers::keithley2450::parse_read(s, settings);
  (void)semilab::drivers::parse_error_entry(s);
  (void)semilab::drivers::parse_resource(s);
  return 0;
}
