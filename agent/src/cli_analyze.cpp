#include "cli_analyze.hpp"

#include <semilab/parsers/formats.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <numbers>
#include <sstream>

namespace semilab::agent {
namespace {

using parsers::analysis_error;
using parsers::analysis_result;
using parsers::spectrum;

constexpr double kHcEvNm = 1239.841984;

constexpr kind_info kKinds[] = {
    {"xrd-peak", "peak 2θ, FWHM, area (fit with linear baseline); d-spacing (Bragg); Scherrer crystallite size",
     "x in degrees 2θ; --wavelength Å (default: the XRDML Kα1, else Cu Kα1 1.5405929), --k (0.9), "
     "--instrument-fwhm degrees (0, subtracted in quadrature), --shape (gaussian), --x-min/--x-max"},
    {"raman-peak", "peak centre, FWHM, area; Si line check near 520.7 cm-1; photon energy for PL spectra in nm",
     "x in cm-1 (Raman shift) or nm (PL); --shape (lorentzian), --x-min/--x-max, --si-reference (520.7), "
     "--si-tolerance (1.0 cm-1)"},
    {"tauc", "optical band gap from the Tauc plot, automatic linear window",
     "x in nm or eV (--x-unit nm|ev when the file does not say); y absorbance, α or transmittance "
     "(label 'transm...'; % when unit % or values > 1.5); --transition direct|indirect (direct), "
     "--min-window points (8), --min-r2 (0.999), --channel N"},
    {"fringe-thickness", "film thickness from interference maxima at normal incidence: 2·n·d = m·λ",
     "x wavelength; --refractive-index n (required), --min-prominence (10 % of the y range), --minima "
     "(use minima instead of maxima), --x-min/--x-max"},
    {"xps-check", "binding energy of a reference line (fit) against ISO 15472 / C 1s: shift and pass",
     "x binding energy, or kinetic energy converted with the source energy and analyser work function "
     "(VAMAS); --line ('C 1s', 'Au 4f7/2', 'Ag 3d5/2', 'Cu 2p3/2'; default from the VAMAS species and "
     "transition), --tolerance eV (0.1), --photon-energy eV, --shape (gaussian), --x-min/--x-max "
     "(default: reference ± 2.5 eV)"},
};

std::string lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

bool contains(std::string_view hay, std::string_view needle) { return lower(hay).find(needle) != std::string::npos; }

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && lower(s.substr(s.size() - suffix.size())) == suffix;
}

std::string_view skip_bom_space(std::string_view b) {
  if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
  while (!b.empty() && std::isspace(static_cast<unsigned char>(b.front()))) b.remove_prefix(1);
  return b;
}

std::optional<double> to_double(std::string_view s) {
  std::string t(s);
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end == t.c_str() || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool is_nm(std::string_view unit) {
  const auto u = lower(unit);
  return u == "nm" || u == "nanometers" || u == "nanometer" || u == "nanometres" || u == "nanometre";
}
bool is_ev(std::string_view unit) { return lower(unit) == "ev"; }
bool is_degrees(std::string_view unit) {
  const auto u = lower(unit);
  return u.empty() || u == "deg" || u == "degree" || u == "degrees" || u == "°" || u == "2theta" || u == "°2θ";
}

analysis_result<parsers::peak_shape> shape_of(const std::optional<std::string>& name, parsers::peak_shape dflt) {
  if (!name) return dflt;
  if (*name == "gaussian") return parsers::peak_shape::gaussian;
  if (*name == "lorentzian") return parsers::peak_shape::lorentzian;
  if (*name == "pseudo-voigt") return parsers::peak_shape::pseudo_voigt;
  return analysis_error{"unknown peak shape '" + *name + "'"};
}

// Uncertainty of f at v propagated from σ by a central difference; nullopt when f fails there.
template <class F>
std::optional<double> propagate(F f, double v, double sigma) {
  if (!(sigma > 0) || !std::isfinite(sigma)) return std::nullopt;
  auto hi = f(v + sigma);
  auto lo = f(v - sigma);
  if (!hi || !lo) return std::nullopt;
  return std::fabs(*hi - *lo) / 2;
}

std::optional<double> opt_sigma(double s) {
  if (!(s > 0) || !std::isfinite(s)) return std::nullopt;
  return s;
}

struct channel {
  std::span<const double> y;
  std::string label;
  std::string unit;
};
analysis_result<channel> pick_channel(const spectrum& s, std::size_t one_based) {
  if (one_based == 0 || one_based > s.y.size())
    return analysis_error{"channel " + std::to_string(one_based) + " does not exist (the file has " +
                          std::to_string(s.y.size()) + ")"};
  const auto i = one_based - 1;
  return channel{s.y[i], i < s.y_labels.size() ? s.y_labels[i] : "", i < s.y_units.size() ? s.y_units[i] : ""};
}

void add_fit(std::vector<analysis_parameter>& out, const parsers::peak_fit& f, const std::string& unit,
             const std::string& y_unit) {
  out.push_back({"center", f.center, unit, opt_sigma(f.center_sigma), {}});
  out.push_back({"fwhm", f.fwhm, unit, opt_sigma(f.fwhm_sigma), {}});
  out.push_back({"amplitude", f.amplitude, y_unit, {}, {}});
  out.push_back({"area", f.area, y_unit.empty() || unit.empty() ? "" : y_unit + "·" + unit, {}, {}});
  out.push_back({"rms_residual", f.rms_residual, y_unit, {}, {}});
  out.push_back({"points", static_cast<double>(f.points), "", {}, {}});
}

analysis_result<std::vector<analysis_parameter>> xrd_peak(const spectrum& s, const channel& ch, const analyze_options& o) {
  if (!is_degrees(s.x_unit)) return analysis_error{"x axis is in '" + s.x_unit + "', expected degrees 2θ"};
  auto shape = shape_of(o.shape, parsers::peak_shape::gaussian);
  if (!shape) return shape.error();
  double lambda = parsers::kCuKAlpha1Angstrom;
  if (o.wavelength_a) {
    lambda = *o.wavelength_a;
  } else if (auto w = s.find("wavelength.kAlpha1")) {
    auto v = to_double(*w);
    if (!v || !(*v > 0)) return analysis_error{"the file's wavelength '" + std::string(*w) + "' is not a number"};
    lambda = *v;
  }
  auto f = parsers::fit_peak(s.x, ch.y, {.shape = *shape, .x_min = o.x_min.value_or(-1e300), .x_max = o.x_max.value_or(1e300)});
  if (!f) return f.error();
  std::vector<analysis_parameter> out;
  out.push_back({"wavelength", lambda, "Å", {}, {}});
  add_fit(out, *f, "deg", ch.unit);
  auto d = parsers::bragg_d_spacing(f->center, lambda);
  if (!d) return d.error();
  out.push_back({"d_spacing", *d, "Å",
                 propagate([&](double tt) { return parsers::bragg_d_spacing(tt, lambda); }, f->center, f->center_sigma), {}});
  auto size = [&](double fwhm) { return parsers::scherrer_size(f->center, fwhm, o.instrument_fwhm_deg, o.k, lambda); };
  auto D = size(f->fwhm);
  if (!D) return analysis_error{"Scherrer size: " + D.error().reason};
  auto sd = propagate(size, f->fwhm, f->fwhm_sigma);
  out.push_back({"scherrer_size", *D / 10.0, "nm", sd ? std::optional<double>(*sd / 10.0) : std::nullopt, {}});
  return out;
}

analysis_result<std::vector<analysis_parameter>> raman_peak(const spectrum& s, const channel& ch, const analyze_options& o) {
  auto shape = shape_of(o.shape, parsers::peak_shape::lorentzian);
  if (!shape) return shape.error();
  auto f = parsers::fit_peak(s.x, ch.y, {.shape = *shape, .x_min = o.x_min.value_or(-1e300), .x_max = o.x_max.value_or(1e300)});
  if (!f) return f.error();
  std::vector<analysis_parameter> out;
  const bool pl = is_nm(s.x_unit);
  add_fit(out, *f, pl ? "nm" : "cm-1", ch.unit);
  if (pl) {
    out.push_back({"photon_energy", parsers::photon_energy_ev(f->center), "eV",
                   propagate([](double l) { return std::optional<double>(parsers::photon_energy_ev(l)); }, f->center,
                             f->center_sigma),
                   {}});
  } else if (std::fabs(f->center - o.si_reference) <= 15.0) {
    // Only a peak near the Si line is checked against it; another Raman line has no reference here.
    auto c = parsers::raman_si_check(f->center, o.si_tolerance, o.si_reference);
    out.push_back({"si_line_deviation", c.deviation, "cm-1", opt_sigma(f->center_sigma), c.pass});
  }
  return out;
}

analysis_result<std::vector<analysis_parameter>> tauc(const spectrum& s, const channel& ch, const analyze_options& o) {
  std::string xu = o.x_unit ? lower(*o.x_unit) : std::string{};
  if (xu.empty()) {
    if (is_nm(s.x_unit) || (s.x_unit.empty() && contains(s.x_label, "wavelength"))) xu = "nm";
    else if (is_ev(s.x_unit) || (s.x_unit.empty() && contains(s.x_label, "energy"))) xu = "ev";
  }
  if (xu != "nm" && xu != "ev")
    return analysis_error{"x axis unit '" + s.x_unit + "' is neither nm nor eV: give --x-unit nm|ev"};
  parsers::tauc_options t;
  if (o.transition == "direct") t.transition = parsers::tauc_transition::direct_allowed;
  else if (o.transition == "indirect") t.transition = parsers::tauc_transition::indirect_allowed;
  else return analysis_error{"--transition must be direct or indirect"};
  t.min_window = o.min_window;
  t.min_r2 = o.min_r2;
  std::vector<double> e, a;
  const bool transmittance = contains(ch.label, "transm");
  const bool percent = transmittance && (ch.unit == "%" || *std::max_element(ch.y.begin(), ch.y.end()) > 1.5);
  for (std::size_t i = 0; i < s.x.size(); ++i) {
    if (o.x_min && s.x[i] < *o.x_min) continue;
    if (o.x_max && s.x[i] > *o.x_max) continue;
    const double x = s.x[i];
    if (!(x > 0)) return analysis_error{"x value " + std::to_string(x) + " is not a positive wavelength or energy"};
    e.push_back(xu == "nm" ? kHcEvNm / x : x);
    double y = ch.y[i];
    if (transmittance) {
      const double tr = percent ? y / 100 : y;
      if (!(tr > 0)) return analysis_error{"transmittance " + std::to_string(y) + " is not positive"};
      y = -std::log10(tr);
    }
    a.push_back(y);
  }
  auto r = parsers::tauc_band_gap(e, a, t);
  if (!r) return r.error();
  std::vector<analysis_parameter> out;
  out.push_back({"band_gap", r->band_gap_ev, "eV", {}, {}});
  out.push_back({"r2", r->r2, "", {}, {}});
  out.push_back({"window_lo", r->window_lo_ev, "eV", {}, {}});
  out.push_back({"window_hi", r->window_hi_ev, "eV", {}, {}});
  out.push_back({"window_points", static_cast<double>(r->window_points), "", {}, {}});
  return out;
}

analysis_result<std::vector<analysis_parameter>> fringe(const spectrum& s, const channel& ch, const analyze_options& o) {
  if (!o.refractive_index) return analysis_error{"fringe-thickness needs --refractive-index"};
  std::vector<std::pair<double, double>> pts;
  for (std::size_t i = 0; i < s.x.size(); ++i) {
    if (o.x_min && s.x[i] < *o.x_min) continue;
    if (o.x_max && s.x[i] > *o.x_max) continue;
    pts.emplace_back(s.x[i], o.minima ? -ch.y[i] : ch.y[i]);
  }
  std::sort(pts.begin(), pts.end());  // find_maxima wants x ascending
  if (pts.size() < 3) return analysis_error{"fewer than 3 points in the window"};
  std::vector<double> x, y;
  for (auto [px, py] : pts) {
    x.push_back(px);
    y.push_back(py);
  }
  const auto [mn, mx] = std::minmax_element(y.begin(), y.end());
  const double prom = o.min_prominence.value_or(0.1 * (*mx - *mn));
  auto ext = parsers::find_maxima(x, y, prom);
  auto d = parsers::fringe_thickness(ext, *o.refractive_index);
  if (!d) return analysis_error{d.error().reason + " (found " + std::to_string(ext.size()) + " " +
                                (o.minima ? "minima" : "maxima") + " with prominence " + std::to_string(prom) + ")"};
  const std::string unit = s.x_unit.empty() ? "" : (is_nm(s.x_unit) ? "nm" : s.x_unit);
  std::vector<analysis_parameter> out;
  out.push_back({"thickness", *d, unit, {}, {}});
  out.push_back({"extrema", static_cast<double>(ext.size()), "", {}, {}});
  out.push_back({"extremum_first", *std::min_element(ext.begin(), ext.end()), unit, {}, {}});
  out.push_back({"extremum_last", *std::max_element(ext.begin(), ext.end()), unit, {}, {}});
  return out;
}

analysis_result<std::vector<analysis_parameter>> xps(const spectrum& s, const channel& ch, const analyze_options& o) {
  auto shape = shape_of(o.shape, parsers::peak_shape::gaussian);
  if (!shape) return shape.error();
  std::string line;
  if (o.line) {
    line = *o.line;
  } else {
    auto sp = s.find("species label");
    auto tr = s.find("transition label");
    if (sp && tr) {
      const std::string prefix = std::string(*sp) + " " + std::string(*tr);
      for (const auto& r : parsers::kXpsReferences)
        if (std::string_view(r.line).starts_with(prefix)) line = r.line;
    }
    if (line.empty()) return analysis_error{"name the reference line with --line ('C 1s', 'Au 4f7/2', 'Ag 3d5/2', 'Cu 2p3/2')"};
  }
  auto ref = parsers::xps_scale_check(line, 0.0, o.xps_tolerance);  // validates the name, gives the reference
  if (!ref) return ref.error();
  std::vector<double> be(s.x);
  std::vector<analysis_parameter> out;
  if (contains(s.x_label, "kinetic")) {
    std::optional<double> hv = o.photon_energy_ev;
    if (!hv)
      if (auto v = s.find("analysis source characteristic energy")) hv = to_double(*v);
    if (!hv) return analysis_error{"kinetic-energy axis without a source energy: give --photon-energy"};
    double phi = 0;
    if (auto v = s.find("analyser work function")) phi = to_double(*v).value_or(0.0);
    for (auto& x : be) x = *hv - x - phi;  // BE = hν − KE − φ
    out.push_back({"photon_energy", *hv, "eV", {}, {}});
    out.push_back({"work_function", phi, "eV", {}, {}});
  } else if (!s.x_unit.empty() && !is_ev(s.x_unit)) {
    return analysis_error{"x axis is in '" + s.x_unit + "', expected eV"};
  }
  const double r0 = ref->reference;
  auto f = parsers::fit_peak(be, ch.y, {.shape = *shape, .x_min = o.x_min.value_or(r0 - 2.5), .x_max = o.x_max.value_or(r0 + 2.5)});
  if (!f) return f.error();
  auto c = parsers::xps_scale_check(line, f->center, o.xps_tolerance);
  if (!c) return c.error();
  add_fit(out, *f, "eV", ch.unit);
  out.push_back({"reference", c->reference, "eV", {}, {}});
  out.push_back({"shift", c->shift, "eV", opt_sigma(f->center_sigma), c->pass});
  return out;
}

std::string fmt(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

}  // namespace

std::span<const kind_info> analyze_kinds() { return kKinds; }

std::optional<std::string> detect_export_format(std::string_view bytes, std::string_view path) {
  if (bytes.size() >= 4 && (bytes.substr(0, 4) == std::string_view("II*\0", 4) || bytes.substr(0, 4) == std::string_view("MM\0*", 4)))
    return "sem-tiff";
  const auto text = skip_bom_space(bytes);
  if (text.starts_with("##")) return "jcamp-dx";
  if (text.starts_with("VAMAS Surface Chemical Analysis Standard Data Transfer Format")) return "vamas";
  if (text.starts_with("<")) {
    if (text.substr(0, 4096).find("xrdMeasurement") != std::string_view::npos) return "xrdml";
  }
  // SPC: the second byte is the version (0x4B new LSB, 0x4C new MSB, 0x4D old); the parser names
  // the unsupported ones.
  if (ends_with_ci(path, ".spc")) return "spc";
  if (bytes.size() >= 512 && (bytes[1] == 0x4B || bytes[1] == 0x4C || bytes[1] == 0x4D) &&
      bytes.find('\0') != std::string_view::npos)
    return "spc";
  if (bytes.find('\0') != std::string_view::npos) return std::nullopt;
  return "csv";
}

parsers::result<spectrum> parse_export(std::string_view bytes, std::string_view path, std::string_view forced) {
  std::string fmt_name;
  if (!forced.empty()) {
    fmt_name = forced;
  } else if (auto d = detect_export_format(bytes, path)) {
    fmt_name = *d;
  } else {
    return parsers::parse_error{0, 0, "binary content of no known format (give --format)"};
  }
  if (fmt_name == "csv") return parsers::parse_csv(bytes);
  if (fmt_name == "jcamp-dx" || fmt_name == "jcamp") return parsers::parse_jcamp(bytes);
  if (fmt_name == "xrdml") return parsers::parse_xrdml(bytes);
  if (fmt_name == "vamas") return parsers::parse_vamas(bytes);
  if (fmt_name == "spc") return parsers::parse_spc(bytes);
  if (fmt_name == "sem-tiff") {
    auto m = parsers::parse_sem_tiff(bytes);
    if (!m) return m.error();
    return parsers::parse_error{0, 0, "SEM TIFF image: metadata only, no spectrum to analyse"};
  }
  return parsers::parse_error{0, 0, "unknown format '" + fmt_name + "'"};
}

analysis_result<std::vector<analysis_parameter>> analyze_spectrum(std::string_view kind, const spectrum& s,
                                                                   const analyze_options& opt) {
  auto ch = pick_channel(s, opt.channel);
  if (!ch) return ch.error();
  if (s.x.size() != ch->y.size()) return analysis_error{"x and y have different lengths"};
  if (s.x.empty()) return analysis_error{"the file holds no points"};
  if (kind == "xrd-peak") return xrd_peak(s, *ch, opt);
  if (kind == "raman-peak") return raman_peak(s, *ch, opt);
  if (kind == "tauc") return tauc(s, *ch, opt);
  if (kind == "fringe-thickness") return fringe(s, *ch, opt);
  if (kind == "xps-check") return xps(s, *ch, opt);
  return analysis_error{"unknown kind '" + std::string(kind) + "'"};
}

analyze_cli::analyze_cli(CLI::App& app) {
  cmd_ = app.add_subcommand("analyze",
                            "Parameters from exported files: spectra (xrd-peak, raman-peak, tauc, ...) and raw "
                            "electrical curves (diode-iv, mosfet-idvg, cv-mos, vdp, hall, tlm, ...)");
  cmd_->add_flag("--list", list_, "List the kinds and methods with their inputs");
  cmd_->add_option("kind", kind_, "What to compute: a spectral kind or an electrical method (see --list)");
  cmd_->add_option("--param", params_, "Electrical methods: a parameter key=value in SI units (repeatable)")
      ->allow_extra_args(false);
  cmd_->add_option("files", files_, "Exported files");
  cmd_->add_flag("--json", json_, "Machine-readable output");
  cmd_->add_option("--format", format_, "Override format detection: csv, jcamp-dx, xrdml, vamas, spc");
  cmd_->add_option("--channel", opt_.channel, "y channel, 1-based")->capture_default_str();
  o_shape_ = cmd_->add_option("--shape", shape_, "gaussian, lorentzian or pseudo-voigt");
  o_x_min_ = cmd_->add_option("--x-min", x_min_, "Lower end of the window (analysed x unit)");
  o_x_max_ = cmd_->add_option("--x-max", x_max_, "Upper end of the window (analysed x unit)");
  o_wavelength_ = cmd_->add_option("--wavelength", wavelength_, "X-ray wavelength, Å");
  cmd_->add_option("--k", opt_.k, "Scherrer constant")->capture_default_str();
  cmd_->add_option("--instrument-fwhm", opt_.instrument_fwhm_deg, "Instrument broadening, degrees 2θ")
      ->capture_default_str();
  cmd_->add_option("--si-reference", opt_.si_reference, "Si Raman line, cm-1")->capture_default_str();
  cmd_->add_option("--si-tolerance", opt_.si_tolerance, "Si line tolerance, cm-1")->capture_default_str();
  cmd_->add_option("--transition", opt_.transition, "direct or indirect")->capture_default_str();
  o_x_unit_ = cmd_->add_option("--x-unit", x_unit_, "nm or ev when the file does not say");
  cmd_->add_option("--min-window", opt_.min_window, "Tauc: points in the smallest window")->capture_default_str();
  cmd_->add_option("--min-r2", opt_.min_r2, "Tauc: minimum R² of the window")->capture_default_str();
  o_n_ = cmd_->add_option("--refractive-index", n_, "Film refractive index");
  o_prominence_ = cmd_->add_option("--min-prominence", prominence_, "Fringe extremum prominence, y unit");
  cmd_->add_flag("--minima", opt_.minima, "Fringes: use minima instead of maxima");
  o_line_ = cmd_->add_option("--line", line_, "XPS reference line, e.g. 'Au 4f7/2'");
  cmd_->add_option("--tolerance", opt_.xps_tolerance, "XPS check tolerance, eV")->capture_default_str();
  o_photon_ = cmd_->add_option("--photon-energy", photon_, "XPS source energy, eV");
}

bool analyze_cli::parsed() const { return cmd_->parsed(); }

int analyze_cli::run(std::ostream& out, std::ostream& err) const {
  if (list_) {
    for (const auto& k : kKinds) out << k.name << ": " << k.computes << "\n  inputs: " << k.inputs << "\n";
    for (const auto& m : methods::analysis_methods()) {
      out << m.method << ": " << m.description << "\n  columns: " << m.columns << "\n  parameters:";
      if (m.params.empty()) out << " none";
      out << "\n";
      for (const auto& p : m.params) {
        out << "    " << p.key;
        if (!p.unit.empty()) out << " [" << p.unit << "]";
        if (p.required) out << " (required)";
        else if (!p.dflt.empty()) out << " (default " << p.dflt << ")";
        out << ": " << p.doc << "\n";
      }
    }
    return 0;
  }
  if (methods::find_analysis(kind_)) return run_method(out, err);
  if (!params_.empty()) {
    err << "semilab-agent: analyze: --param applies to the electrical methods only (semilab-agent analyze --list)\n";
    return 2;
  }
  if (kind_.empty() || files_.empty()) {
    err << "semilab-agent: analyze needs KIND and at least one FILE (kinds: semilab-agent analyze --list)\n";
    return 2;
  }
  // Validated here rather than by CLI11 checks so that every usage error exits 2.
  auto usage = [&](const std::string& why) {
    err << "semilab-agent: analyze: " << why << "\n";
    return 2;
  };
  auto one_of = [](const std::string& v, std::initializer_list<const char*> set) {
    return std::any_of(set.begin(), set.end(), [&](const char* c) { return v == c; });
  };
  if (std::none_of(std::begin(kKinds), std::end(kKinds), [&](const kind_info& k) { return kind_ == k.name; }))
    return usage("unknown kind or method '" + kind_ + "' (semilab-agent analyze --list)");
  if (!format_.empty() && !one_of(format_, {"csv", "jcamp-dx", "xrdml", "vamas", "spc"}))
    return usage("--format must be csv, jcamp-dx, xrdml, vamas or spc");
  if (o_shape_->count() && !one_of(shape_, {"gaussian", "lorentzian", "pseudo-voigt"}))
    return usage("--shape must be gaussian, lorentzian or pseudo-voigt");
  if (!one_of(opt_.transition, {"direct", "indirect"})) return usage("--transition must be direct or indirect");
  if (o_x_unit_->count() && !one_of(x_unit_, {"nm", "ev"})) return usage("--x-unit must be nm or ev");
  if (opt_.channel < 1) return usage("--channel counts from 1");
  if (o_wavelength_->count() && !(wavelength_ > 0)) return usage("--wavelength must be positive");
  if (!(opt_.k > 0)) return usage("--k must be positive");
  if (!(opt_.instrument_fwhm_deg >= 0)) return usage("--instrument-fwhm must not be negative");
  if (!(opt_.si_tolerance >= 0) || !(opt_.xps_tolerance >= 0)) return usage("tolerances must not be negative");
  if (opt_.min_window < 3) return usage("--min-window must be at least 3");
  if (!(opt_.min_r2 > 0 && opt_.min_r2 <= 1)) return usage("--min-r2 must be in (0, 1]");
  if (o_n_->count() && !(n_ > 0)) return usage("--refractive-index must be positive");
  if (o_prominence_->count() && !(prominence_ > 0)) return usage("--min-prominence must be positive");
  if (o_photon_->count() && !(photon_ > 0)) return usage("--photon-energy must be positive");
  auto opt = opt_;
  if (o_shape_->count()) opt.shape = shape_;
  if (o_x_min_->count()) opt.x_min = x_min_;
  if (o_x_max_->count()) opt.x_max = x_max_;
  if (o_wavelength_->count()) opt.wavelength_a = wavelength_;
  if (o_x_unit_->count()) opt.x_unit = x_unit_;
  if (o_n_->count()) opt.refractive_index = n_;
  if (o_prominence_->count()) opt.min_prominence = prominence_;
  if (o_line_->count()) opt.line = line_;
  if (o_photon_->count()) opt.photon_energy_ev = photon_;
  if (opt.x_min && opt.x_max && *opt.x_min >= *opt.x_max) {
    return usage("--x-min must be below --x-max");
  }
  if (kind_ == "fringe-thickness" && !opt.refractive_index) return usage("fringe-thickness needs --refractive-index");

  int rc = 0;
  boost::json::array results;
  for (const auto& file : files_) {
    auto fail = [&](const std::string& why) {
      err << "semilab-agent: " << file << ": " << why << "\n";
      if (json_) results.push_back(boost::json::object{{"file", file}, {"error", why}});
      rc = 1;
    };
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      fail("cannot open");
      continue;
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
      fail("read error");
      continue;
    }
    if (format_.empty() && detect_export_format(bytes, file) == std::optional<std::string>("sem-tiff")) {
      auto m = parsers::parse_sem_tiff(bytes);
      fail(m ? "sem-tiff: an SEM image has metadata but no spectrum to analyse" : "sem-tiff " + m.error().to_string());
      continue;
    }
    auto s = parse_export(bytes, file, format_);
    if (!s) {
      const auto f = format_.empty() ? detect_export_format(bytes, file) : std::optional<std::string>(format_);
      fail((f ? *f + " " : std::string{}) + s.error().to_string());
      continue;
    }
    auto params = analyze_spectrum(kind_, *s, opt);
    if (!params) {
      fail(s->format + ": " + params.error().reason);
      continue;
    }
    if (json_) {
      boost::json::array ps;
      for (const auto& p : *params) {
        boost::json::object o{{"name", p.name}, {"value", p.value}, {"unit", p.unit}};
        if (p.uncertainty) o["uncertainty"] = *p.uncertainty;
        else o["uncertainty"] = nullptr;
        if (p.pass) o["pass"] = *p.pass;
        ps.push_back(std::move(o));
      }
      results.push_back(boost::json::object{{"file", file}, {"format", s->format}, {"parameters", std::move(ps)}});
      continue;
    }
    if (files_.size() > 1) out << "== " << file << " (" << s->format << ")\n";
    for (const auto& p : *params) {
      out << p.name << '\t' << fmt(p.value, 8) << '\t' << p.unit << '\t'
          << (p.uncertainty ? fmt(*p.uncertainty, 2) : std::string{});
      if (p.pass) out << '\t' << (*p.pass ? "pass" : "fail");
      out << '\n';
    }
  }
  if (json_) out << boost::json::serialize(boost::json::object{{"kind", kind_}, {"results", std::move(results)}}) << '\n';
  return rc;
}

// ---- electrical methods ------------------------------------------------------------------------

boost::system::result<methods::data_table, csv_table_error> read_csv_table(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  methods::data_table t;
  int quality_col = -1;
  std::size_t line_no = 0;
  bool header = false;
  char sep = ',';
  auto trim = [](std::string_view v) {
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
    return v;
  };
  auto split = [&](std::string_view line) {
    std::vector<std::string_view> f;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= line.size(); ++i)
      if (i == line.size() || line[i] == sep) {
        f.push_back(trim(line.substr(start, i - start)));
        start = i + 1;
      }
    return f;
  };
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto tl = trim(line);
    if (tl.empty() || tl.front() == '#') continue;
    const std::string where = "line " + std::to_string(line_no) + ": ";
    if (!header) {
      sep = tl.find('\t') != std::string_view::npos ? '\t' : tl.find(';') != std::string_view::npos ? ';' : ',';
      for (auto f : split(tl)) {
        std::string name = lower(f);
        if (name.size() >= 2 && name.front() == '"' && name.back() == '"') name = name.substr(1, name.size() - 2);
        auto cut = name.find_first_of(" ([");
        if (cut != std::string::npos) name.resize(cut);
        if (name.empty()) return csv_table_error{where + "empty column name in the header"};
        if (std::find(t.columns.begin(), t.columns.end(), name) != t.columns.end())
          return csv_table_error{where + "column '" + name + "' appears twice"};
        if (to_double(name)) return csv_table_error{where + "the first line must name the columns (e.g. v,i)"};
        t.columns.push_back(name);
      }
      header = true;
      continue;
    }
    auto fields = split(tl);
    if (fields.size() != t.columns.size())
      return csv_table_error{where + std::to_string(fields.size()) + " values for " +
                             std::to_string(t.columns.size()) + " columns"};
    std::vector<double> row;
    for (std::size_t k = 0; k < fields.size(); ++k) {
      auto v = to_double(fields[k]);
      std::string rest;
      if (v) {
        // The whole field must be the number.
        std::string f(fields[k]);
        char* end = nullptr;
        std::strtod(f.c_str(), &end);
        if (end != f.c_str() + f.size()) v.reset();
      }
      if (!v)
        return csv_table_error{where + "column '" + t.columns[k] + "': '" + std::string(fields[k]) +
                               "' is not a number"};
      row.push_back(*v);
    }
    t.rows.push_back(std::move(row));
  }
  if (!header) return csv_table_error{"no header line naming the columns"};
  for (std::size_t k = 0; k < t.columns.size(); ++k)
    if (t.columns[k] == "quality") quality_col = static_cast<int>(k);
  if (quality_col >= 0) {
    const auto qc = static_cast<std::size_t>(quality_col);
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
      const double q = t.rows[r][qc];
      if (!(q >= 0 && q <= 4294967295.0 && q == std::floor(q)))
        return csv_table_error{"row " + std::to_string(r + 1) + ": quality " + fmt(q, 6) +
                               " is not an unsigned integer"};
      t.quality.push_back(static_cast<std::uint32_t>(q));
    }
  }
  return t;
}

int analyze_cli::run_method(std::ostream& out, std::ostream& err) const {
  auto usage = [&](const std::string& why) {
    err << "semilab-agent: analyze: " << why << "\n";
    return 2;
  };
  if (files_.size() != 1) return usage(kind_ + " analyses one FILE.csv (got " + std::to_string(files_.size()) + ")");
  for (const CLI::Option* o : {o_shape_, o_x_min_, o_x_max_, o_wavelength_, o_x_unit_, o_n_, o_prominence_, o_line_, o_photon_})
    if (o->count()) return usage(o->get_name() + " applies to the spectral kinds, not to " + kind_);
  if (!format_.empty() && format_ != "csv") return usage(kind_ + " reads CSV only");
  methods::param_map params;
  for (const auto& kv : params_) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return usage("--param '" + kv + "' is not key=value");
    auto key = kv.substr(0, eq);
    if (params.contains(key)) return usage("--param " + key + " given twice");
    params[key] = kv.substr(eq + 1);
  }
  const auto& file = files_[0];
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    err << "semilab-agent: " << file << ": cannot open\n";
    return 1;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto table = read_csv_table(bytes);
  if (!table) {
    err << "semilab-agent: " << file << ": " << table.error().message << "\n";
    return 1;
  }
  auto ex = methods::analyze_table(kind_, *table, params);
  if (!ex) {
    // A bad or missing parameter is a usage error; everything else is the data's.
    const bool param_error = ex.error().code == methods::errc::bad_input &&
                             ex.error().message.find("parameter") != std::string::npos;
    err << "semilab-agent: " << file << ": " << ex.error().message << "\n";
    return param_error ? 2 : 1;
  }
  if (json_) {
    boost::json::object ps;
    for (const auto& p : ex->parameters) {
      boost::json::object o;
      if (!p.text.empty()) {
        o["value"] = p.text;
        o["unit"] = p.unit;
      } else {
        o["value"] = p.value;
        o["unit"] = p.unit;
        if (p.uncertainty) o["uncertainty"] = *p.uncertainty;
        else o["uncertainty"] = nullptr;
        if (p.lower_bound) o["lower_bound"] = true;
      }
      ps[p.name] = std::move(o);
    }
    boost::json::array ws;
    for (const auto& w : ex->warnings) ws.push_back(boost::json::value(w));
    boost::json::array wins;
    for (const auto& w : ex->windows)
      wins.push_back(boost::json::object{{"quantity", w.quantity}, {"lo", w.lo}, {"hi", w.hi}, {"points", w.points}});
    out << boost::json::serialize(boost::json::object{{"method", ex->method},
                                                      {"version", ex->version},
                                                      {"file", file},
                                                      {"parameters", std::move(ps)},
                                                      {"warnings", std::move(ws)},
                                                      {"windows", std::move(wins)}})
        << '\n';
    return 0;
  }
  out << "# " << ex->method << " (" << ex->version << "), " << table->rows.size() << " rows of " << file << "\n";
  for (const auto& p : ex->parameters) {
    if (!p.text.empty()) {
      out << p.name << '\t' << p.text << '\t' << p.unit << "\t\n";
      continue;
    }
    auto c = methods::to_customary(p);
    out << p.name << '\t' << fmt(c.value, 8) << '\t' << c.unit << '\t'
        << (c.uncertainty ? fmt(*c.uncertainty, 2) : std::string{});
    if (p.lower_bound) out << "\tlower bound";
    out << '\n';
  }
  for (const auto& w : ex->windows)
    out << "# window " << w.quantity << " " << fmt(w.lo, 6) << " .. " << fmt(w.hi, 6) << " (" << w.points
        << " points)\n";
  for (const auto& w : ex->warnings) out << "warning: " << w << '\n';
  return 0;
}

}  // namespace semilab::agent
