// Station simulator: shared device models, the station file, and the servers (station.hpp).
#include <semilab/sim/station.hpp>

#include <spdlog/spdlog.h>
#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>

namespace semilab::sim {
namespace {

constexpr double kQ = 1.602176634e-19;
constexpr double kK = 1.380649e-23;
constexpr double kEps0 = 8.8541878128e-12;
constexpr double kEpsOx = 3.9 * kEps0;
constexpr double kEpsSi = 11.7 * kEps0;
constexpr double kPiOverLn2 = 4.53236014182719;
constexpr double kMaxVolts = 210.0;

double softplus(double x) noexcept { return x > 30 ? x : std::log1p(std::exp(x)); }

struct kind_terminals {
  std::string_view kind;
  std::vector<std::string_view> terminals;
};
const std::vector<kind_terminals>& kinds() {
  static const std::vector<kind_terminals> k = {
      {"diode", {"anode"}},
      {"mosfet", {"gate", "drain"}},
      {"moscap", {"gate"}},
      {"schottky", {"anode"}},
      {"sheet", {"force", "sense"}},
      {"hall", {"matrix", "magnet", "force", "sense"}},
      {"tlm", {"matrix", "force", "sense"}},
  };
  return k;
}

}  // namespace

station_device::station_device(std::string name, std::string kind, station_device_params p)
    : name_(std::move(name)), kind_(std::move(kind)), p_(p) {}

std::vector<std::string_view> station_device::terminals() const {
  for (const auto& k : kinds())
    if (k.kind == kind_) return k.terminals;
  return {};
}

bool station_device::has_terminal(std::string_view t) const noexcept {
  for (auto x : terminals())
    if (x == t) return true;
  return false;
}

void station_device::drive(std::string_view terminal, const terminal_drive& d) {
  drives_[std::string(terminal)] = d;
}

terminal_drive station_device::drive_of(std::string_view terminal) const {
  auto it = drives_.find(terminal);
  return it == drives_.end() ? terminal_drive{} : it->second;
}

double station_device::diode_current(double volts) const noexcept {
  // I = I0 (exp((V - I Rs)/(n Vt)) - 1), solved by bisection (as keithley2450::diode_current).
  const double nvt = p_.ideality * kK * p_.temperature / kQ;
  if (p_.rs <= 0) return p_.i0 * std::expm1(std::min(volts / nvt, 700.0));
  double lo = -p_.i0;
  double hi = std::max(0.0, volts / p_.rs);
  for (int i = 0; i < 200 && hi - lo > 0; ++i) {
    double mid = 0.5 * (lo + hi);
    double f = mid - p_.i0 * std::expm1((volts - mid * p_.rs) / nvt);
    (f < 0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double station_device::mosfet_drain_current(double vgs, double vds) const noexcept {
  if (vds < 0) return -mosfet_drain_current(vgs - vds, -vds);  // source and drain swap
  const double nvt = p_.n_ss * kK * p_.temperature / kQ;
  // Saturation: the channel pinches off at VDS = VGS - Vth (smoothed through subthreshold);
  // never below 0.1 V, so the linear-region reference case (VDS = 50 mV) is the exact T2 model.
  double vdsat = std::max(nvt * softplus((vgs - p_.vth) / nvt), 0.1);
  double v = std::min(vds, vdsat);
  double s = nvt * softplus((vgs - p_.vth - v / 2) / nvt);
  return p_.beta * v * s / (1 + p_.theta * s);
}

double station_device::moscap_capacitance(double vg) const noexcept {
  // Classical high-frequency C-V of a p-substrate MOS capacitor (Schroder ch. 6): majority
  // carriers only, surface potential psi from VG = VFB + psi - Qs(psi)/Cox', the surface
  // capacitance frozen at its value at psi = 2 phi_F beyond the onset of inversion.
  const double vt = kK * p_.temperature / kQ;
  const double beta = 1 / vt;
  const double ld = std::sqrt(kEpsSi * vt / (kQ * p_.na));
  const double cox = kEpsOx / p_.tox;  // F/m^2
  auto f_of = [&](double psi) {
    return std::sqrt(std::max(std::exp(-beta * psi) + beta * psi - 1, 0.0));
  };
  auto vg_of = [&](double psi) {
    double qs = -(psi >= 0 ? 1 : -1) * std::numbers::sqrt2 * kEpsSi * vt / ld * f_of(psi);
    return p_.vfb + psi - qs / cox;
  };
  auto cs_of = [&](double psi) {
    if (std::fabs(beta * psi) < 1e-6) return kEpsSi / ld;
    return kEpsSi / (std::numbers::sqrt2 * ld) * std::fabs(-std::expm1(-beta * psi)) / f_of(psi);
  };
  const double psi_max = 2 * vt * std::log(p_.na / p_.ni);
  double psi = psi_max;
  if (vg < vg_of(psi_max)) {
    double lo = -2.0, hi = psi_max;
    for (int i = 0; i < 200; ++i) {
      double mid = 0.5 * (lo + hi);
      (vg_of(mid) < vg ? lo : hi) = mid;
    }
    psi = 0.5 * (lo + hi);
  }
  double cs = cs_of(psi);
  return p_.area * cox * cs / (cox + cs);
}

double station_device::schottky_capacitance(double v) const noexcept {
  // Depletion capacitance of a Schottky contact on a uniformly doped n layer (Sze ch. 3):
  // C = A sqrt(q eps_s N_D / (2 (Vbi - V - kT/q))); near and beyond flat band the depletion
  // width is held at its value 1 mV short of it.
  const double vt = kK * p_.temperature / kQ;
  const double x = std::max(p_.vbi - vt - v, 1e-3);
  return p_.area * std::sqrt(kQ * kEpsSi * p_.nd / (2 * x));
}

double station_device::sheet_ratio() const noexcept {
  double ds = p_.diameter > 0 ? p_.diameter / p_.spacing : 0;
  double f2 = 1;
  if (ds > std::sqrt(3.0))
    f2 = std::numbers::ln2 / (std::numbers::ln2 + std::log((ds * ds + 3) / (ds * ds - 3)));
  return p_.r_sheet / (kPiOverLn2 * f2);
}

// ---- van der Pauw / Hall sample and TLM structure behind a switch matrix ---------------------

int station_device::columns() const noexcept {
  if (kind_ == "hall") return 4;
  if (kind_ != "tlm") return 0;
  int pads = 1;
  for (double g : {p_.gap1, p_.gap2, p_.gap3, p_.gap4, p_.gap5}) {
    if (!(g > 0)) break;
    ++pads;
  }
  return pads;
}

void station_device::route(int row, int column) noexcept {
  if (row >= 1 && row <= kMatrixRows) routes_[row - 1] = column;
}

int station_device::route_of(int row) const noexcept {
  return row >= 1 && row <= kMatrixRows ? routes_[row - 1] : 0;
}

double station_device::field() const {
  auto m = drive_of("magnet");
  return m.output && !m.source_voltage ? m.level * p_.tesla_per_amp : 0.0;
}

double station_device::hall_resistance(int a, int b, int c, int d, double field_t) const {
  // Boundary Green's function of a disc: G(x, y) = -(Rs/pi) ln|z_x - z_y| (the van der Pauw
  // theorem holds for it exactly); a contact's own G uses the contact size.
  const double ang[4] = {p_.angle1, p_.angle2, p_.angle3, p_.angle4};
  auto z = [&](int k) { return std::polar(1.0, ang[k - 1] * std::numbers::pi / 180); };
  auto g = [&](int x, int y) {
    const double dist = x == y ? p_.contact_size : std::abs(z(x) - z(y));
    return -p_.r_sheet / std::numbers::pi * std::log(dist);
  };
  double r = g(c, a) - g(c, b) - g(d, a) + g(d, b);
  // Hall term: only when the voltage contacts separate the current contacts on the edge; its
  // sign follows the counter-clockwise order of the contacts (by angle).
  int pos[4];
  for (int k = 0; k < 4; ++k) {
    pos[k] = 0;
    for (int j = 0; j < 4; ++j) {
      const double ak = std::fmod(std::fmod(ang[k], 360.0) + 360.0, 360.0);
      const double aj = std::fmod(std::fmod(ang[j], 360.0) + 360.0, 360.0);
      if (aj < ak || (aj == ak && j < k)) ++pos[k];
    }
  }
  auto arc = [&](int x) { return (pos[x - 1] - pos[a - 1] + 4) % 4; };
  const bool c_in = arc(c) > 0 && arc(c) < arc(b), d_in = arc(d) > 0 && arc(d) < arc(b);
  if (c_in != d_in && c != a && c != b && d != a && d != b)
    r += (c_in ? 1 : -1) * p_.hall_sign * field_t / (kQ * p_.n_sheet);
  return r;
}

double station_device::tlm_resistance(int k) const {
  const double gaps[5] = {p_.gap1, p_.gap2, p_.gap3, p_.gap4, p_.gap5};
  if (k < 1 || k >= columns()) return 0;
  return 2 * p_.r_contact + p_.r_sheet * gaps[k - 1] / p_.width;
}

double station_device::force_resistance() const {
  const int a = routes_[0], b = routes_[1];
  if (a < 1 || b < 1 || a == b || a > columns() || b > columns()) return INFINITY;
  if (kind_ == "hall") return 2 * p_.contact_resistance + hall_resistance(a, b, a, b, field());
  double r = 0;
  for (int k = std::min(a, b); k < std::max(a, b); ++k) r += tlm_resistance(k);
  return r;
}

double station_device::potential(int col, double amps) const {
  // TLM: pad metal potentials along the chain, force LO pad at 0. Pads outside the forced
  // span carry no current and sit at the layer's potential next to the end pad.
  const int a = routes_[0], b = routes_[1];
  const int lo = std::min(a, b), hi = std::max(a, b);
  const double sgn = a < b ? 1.0 : -1.0;  // current flows from a towards b
  auto metal = [&](int k) {  // potential of pad k's metal, lo <= k <= hi
    double r = 0;
    for (int j = k; j < hi; ++j) r += tlm_resistance(j);
    const double v_from_hi = amps * sgn * r;  // potential relative to pad hi
    return a < b ? v_from_hi : v_from_hi + amps * force_resistance();
  };
  if (col < lo) return metal(lo) - sgn * amps * p_.r_contact;
  if (col > hi) return metal(hi) + sgn * amps * p_.r_contact;
  return metal(col);
}

double station_device::current(std::string_view terminal, double volts) const {
  if ((kind_ == "hall" || kind_ == "tlm") && terminal == "force") {
    const double r = force_resistance();
    return std::isfinite(r) ? volts / r : 0.0;
  }
  if (kind_ == "hall" || kind_ == "tlm") return 0;
  if (kind_ == "diode") return diode_current(volts);
  if (kind_ == "mosfet") {
    if (terminal == "gate") return p_.gate_leakage * volts;
    auto g = drive_of("gate");
    double vgs = 0;
    if (g.output) vgs = g.source_voltage ? g.level : g.level / p_.gate_leakage;
    return mosfet_drain_current(vgs, volts);
  }
  if (kind_ == "moscap" || kind_ == "schottky") return p_.leakage * volts;
  if (kind_ == "sheet") return terminal == "force" ? (volts - p_.thermo_emf) / sheet_ratio() : 0.0;
  return 0;
}

double station_device::voltage(std::string_view terminal, double amps) const {
  if (kind_ == "sheet" && terminal == "force") return amps * sheet_ratio() + p_.thermo_emf;
  if (kind_ == "hall" || kind_ == "tlm") {
    const double r = force_resistance();
    if (terminal != "force" || amps == 0) return 0;
    return std::isfinite(r) ? amps * r : std::copysign(kMaxVolts, amps);  // open: compliance
  }
  if (kind_ == "moscap" || kind_ == "schottky")
    return p_.leakage > 0 ? amps / p_.leakage : std::copysign(kMaxVolts, amps);
  if (kind_ == "mosfet" && terminal == "gate") return amps / p_.gate_leakage;
  // Monotonic I(V): bisection over the source range.
  double lo = -kMaxVolts, hi = kMaxVolts;
  if (current(terminal, hi) < amps) return hi;
  if (current(terminal, lo) > amps) return lo;
  for (int i = 0; i < 200; ++i) {
    double mid = 0.5 * (lo + hi);
    (current(terminal, mid) < amps ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::complex<double> station_device::impedance(std::string_view, double freq_hz,
                                               double bias) const {
  double w = 2 * std::numbers::pi * freq_hz;
  double c = kind_ == "moscap"     ? moscap_capacitance(bias)
             : kind_ == "schottky" ? schottky_capacitance(bias)
                                   : 0.0;
  std::complex<double> y(p_.leakage > 0 ? p_.leakage : 1e-15, w * c);
  return p_.series_resistance + 1.0 / y;
}

double station_device::sensed_volts(std::string_view terminal) const {
  if ((kind_ == "hall" || kind_ == "tlm") && terminal == "sense") {
    const int c = routes_[2], d = routes_[3];
    if (c < 1 || d < 1 || c > columns() || d > columns()) return 0;  // open input
    const double thermo = p_.thermo_emf * (c - d);
    auto f = drive_of("force");
    const double r = force_resistance();
    if (!f.output || !std::isfinite(r)) return thermo;
    const double amps = f.source_voltage ? f.level / r : f.level;
    if (kind_ == "tlm") return potential(c, amps) - potential(d, amps) + thermo;
    const int a = routes_[0], b = routes_[1];
    double v = amps * hall_resistance(a, b, c, d, field());
    // A sense contact that carries the current also sees its contact resistance.
    if (c == a) v += amps * p_.contact_resistance;
    if (c == b) v -= amps * p_.contact_resistance;
    if (d == a) v -= amps * p_.contact_resistance;
    if (d == b) v += amps * p_.contact_resistance;
    return v + thermo;
  }
  if (kind_ == "sheet" && terminal == "sense") {
    auto f = drive_of("force");
    if (!f.output) return p_.thermo_emf;
    double amps = f.source_voltage ? current("force", f.level) : f.level;
    return amps * sheet_ratio() + p_.thermo_emf;
  }
  return 0;
}

// ---- station file ---------------------------------------------------------------------------

namespace {

struct param_key {
  std::string_view key;
  double station_device_params::*member;
};
constexpr param_key kParams[] = {
    {"i0", &station_device_params::i0},
    {"ideality", &station_device_params::ideality},
    {"rs", &station_device_params::rs},
    {"temperature", &station_device_params::temperature},
    {"beta", &station_device_params::beta},
    {"vth", &station_device_params::vth},
    {"n_ss", &station_device_params::n_ss},
    {"theta", &station_device_params::theta},
    {"gate_leakage", &station_device_params::gate_leakage},
    {"na", &station_device_params::na},
    {"tox", &station_device_params::tox},
    {"area", &station_device_params::area},
    {"vfb", &station_device_params::vfb},
    {"series_resistance", &station_device_params::series_resistance},
    {"leakage", &station_device_params::leakage},
    {"ni", &station_device_params::ni},
    {"nd", &station_device_params::nd},
    {"vbi", &station_device_params::vbi},
    {"r_sheet", &station_device_params::r_sheet},
    {"spacing", &station_device_params::spacing},
    {"diameter", &station_device_params::diameter},
    {"thermo_emf", &station_device_params::thermo_emf},
    {"n_sheet", &station_device_params::n_sheet},
    {"hall_sign", &station_device_params::hall_sign},
    {"angle1", &station_device_params::angle1},
    {"angle2", &station_device_params::angle2},
    {"angle3", &station_device_params::angle3},
    {"angle4", &station_device_params::angle4},
    {"contact_size", &station_device_params::contact_size},
    {"contact_resistance", &station_device_params::contact_resistance},
    {"tesla_per_amp", &station_device_params::tesla_per_amp},
    {"width", &station_device_params::width},
    {"r_contact", &station_device_params::r_contact},
    {"gap1", &station_device_params::gap1},
    {"gap2", &station_device_params::gap2},
    {"gap3", &station_device_params::gap3},
    {"gap4", &station_device_params::gap4},
    {"gap5", &station_device_params::gap5},
    {"noise_relative", &station_device_params::noise_relative},
    {"noise_floor", &station_device_params::noise_floor},
};

std::string where(std::string_view file, const toml::source_region& r) {
  return std::string(file) + ":" + std::to_string(r.begin.line) + ":" +
         std::to_string(r.begin.column);
}

}  // namespace

std::optional<station_config> parse_station(std::string_view text, std::string_view source,
                                             std::string& error) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    error = where(source, e.source()) + ": " + std::string(e.description());
    return std::nullopt;
  }
  station_config cfg;
  for (auto&& [k, v] : root) {
    if (k.str() != "device" && k.str() != "instrument") {
      error = where(source, k.source()) + ": " + std::string(k.str()) +
              ": unknown table (expected [[device]] and [[instrument]])";
      return std::nullopt;
    }
  }
  auto string_of = [&](const toml::table& t, std::string_view key, std::string_view path,
                       bool required, std::string& out) {
    auto* n = t.get(key);
    if (!n) {
      if (required) error = where(source, t.source()) + ": " + std::string(path) + "." +
                            std::string(key) + ": required";
      return !required;
    }
    auto s = n->value<std::string>();
    if (!s) {
      error = where(source, n->source()) + ": " + std::string(path) + "." + std::string(key) +
              ": expected a string";
      return false;
    }
    out = *s;
    return true;
  };
  if (auto* arr = root.get_as<toml::array>("device")) {
    std::size_t i = 0;
    for (auto& n : *arr) {
      std::string path = "device[" + std::to_string(i++) + "]";
      auto* t = n.as_table();
      if (!t) {
        error = where(source, n.source()) + ": " + path + ": expected [[device]] tables";
        return std::nullopt;
      }
      std::string name, kind;
      if (!string_of(*t, "name", path, true, name) || !string_of(*t, "kind", path, true, kind))
        return std::nullopt;
      bool known = false;
      for (const auto& kt : kinds()) known = known || kt.kind == kind;
      if (!known) {
        error = where(source, t->source()) + ": " + path +
                ".kind: unknown device kind '" + kind + "' (diode, mosfet, moscap, schottky, sheet, hall, tlm)";
        return std::nullopt;
      }
      station_device_params p;
      for (auto&& [key, val] : *t) {
        if (key.str() == "name" || key.str() == "kind") continue;
        const param_key* pk = nullptr;
        for (const auto& c : kParams)
          if (c.key == key.str()) pk = &c;
        if (!pk) {
          error = where(source, key.source()) + ": " + path + "." + std::string(key.str()) +
                  ": unknown device parameter";
          return std::nullopt;
        }
        auto d = val.value<double>();
        if (!d || !val.is_number() || !std::isfinite(*d)) {
          error = where(source, val.source()) + ": " + path + "." + std::string(key.str()) +
                  ": expected a number";
          return std::nullopt;
        }
        p.*(pk->member) = *d;
      }
      for (const auto& d : cfg.devices)
        if (d.first == name) {
          error = where(source, t->source()) + ": " + path + ".name: duplicate device '" + name + "'";
          return std::nullopt;
        }
      cfg.devices.push_back({name, {kind, p}});
    }
  }
  if (auto* arr = root.get_as<toml::array>("instrument")) {
    std::size_t i = 0;
    for (auto& n : *arr) {
      std::string path = "instrument[" + std::to_string(i++) + "]";
      auto* t = n.as_table();
      if (!t) {
        error = where(source, n.source()) + ": " + path + ": expected [[instrument]] tables";
        return std::nullopt;
      }
      station_instrument_config ic;
      if (!string_of(*t, "id", path, true, ic.id) || !string_of(*t, "model", path, true, ic.model) ||
          !string_of(*t, "device", path, true, ic.device) ||
          !string_of(*t, "terminal", path, true, ic.terminal) ||
          !string_of(*t, "listen", path, false, ic.listen))
        return std::nullopt;
      if (auto* s = t->get("seed")) {
        auto v = s->value<std::int64_t>();
        if (!v || *v < 0) {
          error = where(source, s->source()) + ": " + path + ".seed: expected an integer >= 0";
          return std::nullopt;
        }
        ic.seed = static_cast<std::uint64_t>(*v);
      }
      for (auto&& [key, val] : *t) {
        auto k = key.str();
        if (k != "id" && k != "model" && k != "device" && k != "terminal" && k != "listen" &&
            k != "seed") {
          error = where(source, key.source()) + ": " + path + "." + std::string(k) +
                  ": unknown key (id, model, listen, device, terminal, seed)";
          return std::nullopt;
        }
      }
      const std::pair<std::string, std::pair<std::string, station_device_params>>* dev = nullptr;
      for (const auto& d : cfg.devices)
        if (d.first == ic.device) dev = &d;
      if (!dev) {
        error = where(source, t->source()) + ": " + path + ".device: no device named '" +
                ic.device + "'";
        return std::nullopt;
      }
      station_device probe(dev->first, dev->second.first, dev->second.second);
      if (!probe.has_terminal(ic.terminal)) {
        std::string known;
        for (auto x : probe.terminals()) known += (known.empty() ? "" : ", ") + std::string(x);
        error = where(source, t->source()) + ": " + path + ".terminal: a " + dev->second.first +
                " has no terminal '" + ic.terminal + "' (" + known + ")";
        return std::nullopt;
      }
      if (ic.model != "keithley2450" && ic.model != "e4980a" && ic.model != "34461a" &&
          ic.model != "keithley7001" && ic.model != "kepco-bop") {
        error = where(source, t->source()) + ": " + path + ".model: '" + ic.model +
                "' is not served in a station (keithley2450, e4980a, 34461a, keithley7001, "
                "kepco-bop)";
        return std::nullopt;
      }
      for (const auto& o : cfg.instruments)
        if (o.id == ic.id) {
          error = where(source, t->source()) + ": " + path + ".id: duplicate id '" + ic.id + "'";
          return std::nullopt;
        }
      cfg.instruments.push_back(std::move(ic));
    }
  }
  if (cfg.instruments.empty()) {
    error = std::string(source) + ": a station needs at least one [[instrument]]";
    return std::nullopt;
  }
  return cfg;
}

std::optional<station_config> load_station(const std::string& path, std::string& error) {
  std::ifstream f(path);
  if (!f) {
    error = path + ": cannot read the station file";
    return std::nullopt;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_station(ss.str(), path, error);
}

// ---- the station ----------------------------------------------------------------------------

station::station(boost::asio::io_context& io, const station_config& cfg, std::string& error) {
  for (const auto& [name, kp] : cfg.devices)
    devices_.push_back(std::make_unique<station_device>(name, kp.first, kp.second));
  for (const auto& ic : cfg.instruments) {
    auto* dev = device(ic.device);
    if (!dev || !dev->has_terminal(ic.terminal)) {
      error = "instrument " + ic.id + ": no terminal " + ic.terminal + " on device " + ic.device;
      return;
    }
    auto inst = make_station_instrument(ic.model, *dev, ic.terminal, ic.seed);
    if (!inst) {
      error = "instrument " + ic.id + ": model " + ic.model + " is not served in a station";
      return;
    }
    boost::asio::ip::tcp::endpoint ep;
    if (!parse_listen(ic.listen, ep)) {
      error = "instrument " + ic.id + ": listen '" + ic.listen + "' is not HOST:PORT";
      return;
    }
    servers_.emplace_back(ic.id, std::make_unique<sim_server>(io, std::move(inst), ep));
  }
  ok_ = true;
}

station::~station() = default;

void station::start() {
  for (auto& [id, s] : servers_) s->start();
}

void station::stop() {
  for (auto& [id, s] : servers_) s->stop();
}

std::vector<station::served> station::endpoints() const {
  std::vector<served> out;
  for (const auto& [id, s] : servers_) out.push_back({id, s->local_endpoint()});
  return out;
}

station_device* station::device(std::string_view name) noexcept {
  for (auto& d : devices_)
    if (d->name() == name) return d.get();
  return nullptr;
}

}  // namespace semilab::sim
