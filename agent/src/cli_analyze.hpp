#pragma once
// `semilab-agent analyze`: edge parameters (parsers/edge.hpp) computed from exported files as
// they sit in a folder, for the field engineer and for scripts.
//
//   semilab-agent analyze --list
//     Every kind with what it computes and the options it reads.
//   semilab-agent analyze KIND FILE... [--json] [--format F] [--channel N] [options]
//     KIND: xrd-peak, raman-peak, tauc, fringe-thickness, xps-check. The format of each FILE is
//     detected from its content (JCAMP-DX "##", XRDML XML, VAMAS header, TIFF magic, SPC header;
//     otherwise CSV/TSV/.xy), with the extension as a hint for SPC; --format overrides.
//     Text output: one line per parameter, tab separated: name, value, unit, uncertainty (1 σ,
//     empty when there is none) and, for checks, "pass"/"fail". With several files each block
//     starts with a line "== FILE (format)". --json: {"kind", "results": [{"file", "format",
//     "parameters": [{"name", "value", "unit", "uncertainty"|null[, "pass"]}]} or {"file",
//     "error"}]}.
//     Exit codes: 0 every file analysed; 1 a file could not be read, parsed or analysed (the
//     message names the file and the reason; other files are still analysed); 2 usage errors.
//     A check that fails (Si line, XPS scale) is a result, not an error: exit 0, "fail".
//   semilab-agent analyze METHOD FILE.csv [--param key=value ...] [--json]
//     METHOD: an electrical method of methods/analyze.hpp (diode-iv, mosfet-idvg, mosfet-idvd,
//     cv-mos, cv-schottky, four-point, vdp, hall, tlm, check-standard), analysed by
//     methods::analyze_table, the code live runs use. FILE: CSV (comma, semicolon or tab) whose
//     first non-comment line names the SI columns ("v,i"; a unit after a space or in brackets is
//     ignored; an optional `quality` column carries the quality bits); '#' lines are comments.
//     Parameters are SI values (`--param area=1e-8`). Text output: one line per parameter in the
//     customary unit (cm^-3, cm^2/(V*s), mV/dec, ohm/sq, ...): name, value, unit, uncertainty;
//     then "warning: ..." lines. --json: {"method", "version", "parameters": {NAME: {"value",
//     "unit", "uncertainty"}}, "warnings": [...], "windows": [...]} in SI units; text-valued
//     results (carrier_type) carry a string value and no uncertainty; a numeric parameter
//     without one has "uncertainty": null. Exit 1 when the file cannot be read or the analysis
//     fails (message on stderr), 2 on usage errors.
#include <semilab/parsers/edge.hpp>
#include <semilab/parsers/spectrum.hpp>
#include <semilab/methods/analyze.hpp>

#include <boost/system/result.hpp>

#include <CLI/CLI.hpp>

#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::agent {

// Format names as parsers::spectrum::format uses them, plus "sem-tiff".
// Content first; extension (".spc") only for SPC, whose header has no magic bytes worth the name.
// nullopt: binary content of no known format.
[[nodiscard]] std::optional<std::string> detect_export_format(std::string_view bytes, std::string_view path);

// Parses with the detected (or forced, when non-empty) format. A SEM TIFF has no spectrum: error.
[[nodiscard]] parsers::result<parsers::spectrum> parse_export(std::string_view bytes, std::string_view path,
                                                             std::string_view forced_format = {});

struct analyze_options {
  std::size_t channel = 1;  // 1-based y channel
  std::optional<std::string> shape;  // gaussian, lorentzian, pseudo-voigt; default per kind
  std::optional<double> x_min, x_max;  // fit window in the analysed x unit
  // xrd-peak
  std::optional<double> wavelength_a;  // Å; default: the file's Kα1, else Cu Kα1
  double k = 0.9;
  double instrument_fwhm_deg = 0.0;
  // raman-peak
  double si_reference = parsers::kSiRamanLine;
  double si_tolerance = 1.0;
  // tauc
  std::string transition = "direct";  // direct | indirect
  std::optional<std::string> x_unit;  // nm | ev, when the file does not say
  std::size_t min_window = 8;
  double min_r2 = 0.999;
  // fringe-thickness
  std::optional<double> refractive_index;
  std::optional<double> min_prominence;  // default 10 % of the y range
  bool minima = false;
  // xps-check
  std::optional<std::string> line;  // default from the VAMAS species/transition labels
  double xps_tolerance = 0.1;
  std::optional<double> photon_energy_ev;  // default from the VAMAS source energy
};

struct analysis_parameter {
  std::string name;
  double value = 0;
  std::string unit;
  std::optional<double> uncertainty;
  std::optional<bool> pass;
};

struct kind_info {
  const char* name;
  const char* computes;
  const char* inputs;
};
[[nodiscard]] std::span<const kind_info> analyze_kinds();

// The parameters of one kind from one parsed spectrum.
[[nodiscard]] parsers::analysis_result<std::vector<analysis_parameter>> analyze_spectrum(
    std::string_view kind, const parsers::spectrum& s, const analyze_options& opt);

class analyze_cli {
 public:
  explicit analyze_cli(CLI::App& app);
  [[nodiscard]] bool parsed() const;
  [[nodiscard]] int run(std::ostream& out, std::ostream& err) const;

 private:
  CLI::App* cmd_ = nullptr;
  std::string kind_;
  std::vector<std::string> files_;
  std::vector<std::string> params_;  // --param key=value (electrical methods)
  std::string format_;
  bool list_ = false;
  bool json_ = false;
  analyze_options opt_;
  // CLI11 fills plain members; optionals are set from these after parsing.
  double wavelength_ = 0, x_min_ = 0, x_max_ = 0, n_ = 0, prominence_ = 0, photon_ = 0;
  std::string shape_, x_unit_, line_;
  CLI::Option* o_wavelength_ = nullptr;
  CLI::Option* o_x_min_ = nullptr;
  CLI::Option* o_x_max_ = nullptr;
  CLI::Option* o_n_ = nullptr;
  CLI::Option* o_prominence_ = nullptr;
  CLI::Option* o_photon_ = nullptr;
  CLI::Option* o_shape_ = nullptr;
  CLI::Option* o_x_unit_ = nullptr;
  CLI::Option* o_line_ = nullptr;

  [[nodiscard]] int run_method(std::ostream& out, std::ostream& err) const;
};

// CSV with a header row naming the columns (electrical methods): names lower-cased, a unit after
// a space or in brackets dropped; '#' lines and blank lines skipped; comma, semicolon or tab.
// Errors name the line.
struct csv_table_error {
  std::string message;
};
[[nodiscard]] boost::system::result<methods::data_table, csv_table_error> read_csv_table(
    std::string_view text);

}  // namespace semilab::agent
