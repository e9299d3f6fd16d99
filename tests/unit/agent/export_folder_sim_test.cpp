// semilab-sim --model export-folder: every file it writes is detected as its format, parses, and
// gives the analysis it was made for (the numbers it was generated around).
#include "cli_analyze.hpp"

#include <semilab/parsers/formats.hpp>
#include <semilab/sim/export_folder.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace semilab;

namespace {

double param(const std::vector<agent::analysis_parameter>& ps, std::string_view name) {
  for (const auto& p : ps)
    if (p.name == name) return p.value;
  FAIL("no parameter " << name);
  return 0;
}

}  // namespace

TEST_CASE("export-folder simulator: each format detected, parsed and analysed") {
  std::mt19937_64 rng(3);
  REQUIRE(sim::export_formats().size() == 6);
  for (std::uint64_t n = 1; n <= 12; ++n) {
    const auto fmt = sim::export_formats()[(n - 1) % 6];
    auto f = sim::make_export_file(fmt, n, rng);
    CAPTURE(f.name);
    REQUIRE_FALSE(f.bytes.empty());
    CHECK(agent::detect_export_format(f.bytes, f.name) == std::optional<std::string>(std::string(fmt)));
    if (fmt == "sem-tiff") {
      auto m = parsers::parse_sem_tiff(f.bytes);
      REQUIRE(m.has_value());
      CHECK(m->width == 64);
      CHECK(m->height == 48);
      REQUIRE(m->pixel_size_m.has_value());
      CHECK(*m->pixel_size_m > 1e-9);
      continue;
    }
    auto s = agent::parse_export(f.bytes, f.name);
    REQUIRE(s.has_value());
    CHECK(s->x.size() > 100);
    agent::analyze_options o;
    std::string kind = fmt == "xrdml" ? "xrd-peak" : fmt == "spc" ? "raman-peak" : fmt == "vamas" ? "xps-check" : "tauc";
    auto ps = agent::analyze_spectrum(kind, *s, o);
    REQUIRE(ps.has_value());
    if (kind == "xrd-peak") CHECK(param(*ps, "center") == doctest::Approx(28.44).epsilon(0.002));
    if (kind == "raman-peak") CHECK(param(*ps, "center") == doctest::Approx(520.7).epsilon(0.002));
    if (kind == "xps-check") CHECK(param(*ps, "center") == doctest::Approx(84.0).epsilon(0.002));
    if (kind == "tauc") CHECK(param(*ps, "band_gap") == doctest::Approx(3.28).epsilon(0.02));
  }
  CHECK(sim::make_export_file("pdf", 1, rng).name.empty());
}
