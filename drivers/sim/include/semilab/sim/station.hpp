#pragma once
// A simulated measurement station: several instruments, each on its own TCP port, wired to the
// terminals of shared device models, so a method runs live against physics (semilab-sim
// --station FILE). Two SMUs on the gate and the drain of one MOSFET see each other: the drain
// current depends on both source levels. An LCR meter on a MOS capacitor sees the classical
// high-frequency C-V; an SMU forcing current through the outer probes of a four-point head reads
// the inner-probe voltage (four-wire sense), and a DMM on the sense pair reads the same voltage.
//
// Station file (TOML, SI units):
//   [[device]]  name, kind = diode | mosfet | moscap | schottky | sheet | hall | tlm, and the kind's parameters
//               (station_device_params; unknown keys are errors naming file:line)
//   [[instrument]] id, model = keithley2450 | e4980a | 34461a | keithley7001 | kepco-bop, listen = "HOST:PORT" (port 0 =
//               any free port), device, terminal, seed
// Terminals: diode "anode"; mosfet "gate", "drain" (source and body grounded); moscap "gate"; schottky "anode";
// sheet "force" (an SMU forcing current, reading the four-wire voltage) and "sense" (a DMM);
// hall "matrix" (switch matrix, model keithley7001), "magnet" (magnet supply, model kepco-bop),
// "force" (SMU between the contacts routed to rows 1/2), "sense" (DMM across rows 3/4); tlm
// "matrix", "force", "sense" likewise over the pads.
//
// Instruments speak the command subset of their model that the drivers use (init, poll and the
// capability tables of drivers/src/model.cpp): the 2450 dialect with buffered linear and list
// sweeps in simulated real time, the E4980A with single points and DC-bias list sweeps, the
// 34461A with CONF/NPLC/READ?. Like the single-instrument simulators, everything runs on one
// io_context thread; the device models are only touched there.
#include <semilab/sim/instrument.hpp>
#include <semilab/sim/server.hpp>

#include <boost/asio/io_context.hpp>

#include <complex>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace semilab::sim {

// What a source drives onto a terminal (read by the other terminals of the same device).
struct terminal_drive {
  bool output = false;
  bool source_voltage = true;
  double level = 0;    // V or A
  double volts = 0;    // the terminal voltage that results (solved by the device)
};

// Device parameters (SI). Defaults are the reference cases of measurement-methods.md §9.
struct station_device_params {
  // diode (T1)
  double i0 = 1e-12, ideality = 1.8, rs = 5.0, temperature = 300.0;
  // mosfet (T2a): ID = beta*Vds_eff*nVt*softplus((VGS - Vth - Vds_eff/2)/nVt), Vds_eff =
  // min(VDS, nVt*softplus((VGS - Vth)/nVt)) (saturation), over (1 + theta*s)
  double beta = 1.3813e-3, vth = 0.5, n_ss = 1.2, theta = 0.0, gate_leakage = 1e-12;  // S
  // moscap (T3): p substrate, classical HF model (majority carriers, depletion beyond 2 phi_F)
  double na = 1e22, tox = 10e-9, area = 1e-8, vfb = -0.9, series_resistance = 0.0,
         leakage = 0.0, ni = 1e16;
  // schottky: metal on a uniformly doped n layer of nd (m^-3), built-in voltage vbi (V); area,
  // series_resistance, leakage and temperature as above
  double nd = 1e22, vbi = 0.7;
  // sheet: thin film of r_sheet on a disc of `diameter`, collinear probes `spacing` apart
  double r_sheet = 100.0, spacing = 1e-3, diameter = 0.1, thermo_emf = 20e-6;
  // hall: van der Pauw sample, a disc with point contacts 1-4 on its edge at angle1..angle4
  // (degrees, counter-clockwise; unequal spacing = geometry asymmetry), sheet resistance r_sheet,
  // sheet carrier density n_sheet (m^-2) of type hall_sign (-1 n, +1 p); contact_size (contact
  // radius over disc radius) and contact_resistance (ohm) only enter two-terminal readings;
  // thermo_emf * k is contact k's thermoelectric offset. The magnet gives tesla_per_amp.
  double n_sheet = 1e17, hall_sign = -1, angle1 = 0, angle2 = 90, angle3 = 180, angle4 = 270,
         contact_size = 1e-3, contact_resistance = 10, tesla_per_amp = 0.1;
  // tlm: a row of pads of width `width` on a layer of r_sheet, gaps gap1..gap5 between pads k and
  // k+1 (0 = no more pads), r_contact (ohm) per pad contact: R(k, k+1) = 2 r_contact + r_sheet
  // gap_k / width.
  double width = 100e-6, r_contact = 5, gap1 = 5e-6, gap2 = 10e-6, gap3 = 20e-6, gap4 = 40e-6,
         gap5 = 0;
  // measurement noise
  double noise_relative = 1e-5, noise_floor = 1e-15;
};

class station_device {
 public:
  station_device(std::string name, std::string kind, station_device_params p);
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::string& kind() const noexcept { return kind_; }
  [[nodiscard]] const station_device_params& params() const noexcept { return p_; }
  [[nodiscard]] bool has_terminal(std::string_view t) const noexcept;
  [[nodiscard]] std::vector<std::string_view> terminals() const;

  // DC current into `terminal` held at `volts`, the other terminals as driven now.
  [[nodiscard]] double current(std::string_view terminal, double volts) const;
  // The terminal voltage that makes `amps` flow (monotonic devices: bisection); for the sheet's
  // force terminal, the four-wire (inner probe) voltage.
  [[nodiscard]] double voltage(std::string_view terminal, double amps) const;
  // Small-signal impedance at a DC bias (moscap, schottky).
  [[nodiscard]] std::complex<double> impedance(std::string_view terminal, double freq_hz,
                                               double bias) const;
  // Voltage a voltmeter on `terminal` reads (sheet "sense": the inner-probe voltage).
  [[nodiscard]] double sensed_volts(std::string_view terminal) const;

  void drive(std::string_view terminal, const terminal_drive& d);
  [[nodiscard]] terminal_drive drive_of(std::string_view terminal) const;

  // Switch matrix of a hall or tlm device: row 1 force HI, 2 force LO, 3 sense HI, 4 sense LO;
  // column = contact (hall 1-4) or pad (tlm 1..pads). 0 = open.
  static constexpr int kMatrixRows = 4;
  [[nodiscard]] int columns() const noexcept;  // contacts or pads; 0 without a matrix
  void route(int row, int column) noexcept;
  [[nodiscard]] int route_of(int row) const noexcept;
  // Field at the sample (T): the magnet supply's current times tesla_per_amp.
  [[nodiscard]] double field() const;
  // Noise-free four-terminal resistance V(v_plus, v_minus)/I(i_from -> i_to) at field b (hall).
  [[nodiscard]] double hall_resistance(int i_from, int i_to, int v_plus, int v_minus,
                                       double b) const;
  // Noise-free resistance between adjacent pads k, k+1 (tlm; pads 1-based).
  [[nodiscard]] double tlm_resistance(int k) const;

  // Noise-free model functions (tests compare extractions against these).
  [[nodiscard]] double diode_current(double v) const noexcept;
  [[nodiscard]] double mosfet_drain_current(double vgs, double vds) const noexcept;
  [[nodiscard]] double moscap_capacitance(double vg) const noexcept;  // F (whole area)
  [[nodiscard]] double schottky_capacitance(double v) const noexcept;  // F (whole area)
  [[nodiscard]] double sheet_ratio() const noexcept;                  // V/I of the inner probes

 private:
  std::string name_, kind_;
  station_device_params p_;
  std::map<std::string, terminal_drive, std::less<>> drives_;
  int routes_[kMatrixRows] = {0, 0, 0, 0};
  [[nodiscard]] double force_resistance() const;  // two-terminal, routed pair; inf when open
  [[nodiscard]] double potential(int column, double amps) const;  // tlm pad, force LO = 0
};

struct station_instrument_config {
  std::string id, model, listen = "127.0.0.1:0", device, terminal;
  std::uint64_t seed = 1;
};

struct station_config {
  std::vector<std::pair<std::string, std::pair<std::string, station_device_params>>> devices;
  std::vector<station_instrument_config> instruments;
};

// Parses a station file; on failure `error` reads "file:line:col: key: why".
[[nodiscard]] std::optional<station_config> parse_station(std::string_view toml_text,
                                                          std::string_view source_name,
                                                          std::string& error);
[[nodiscard]] std::optional<station_config> load_station(const std::string& path,
                                                         std::string& error);

// The devices and instruments of a station, served on one io_context.
class station {
 public:
  // Throws boost::system::system_error when a listen address cannot be bound (start-up only);
  // `error` set and ok() false for configuration errors (unknown model, device or terminal).
  station(boost::asio::io_context& io, const station_config& cfg, std::string& error);
  ~station();
  station(const station&) = delete;
  station& operator=(const station&) = delete;
  [[nodiscard]] bool ok() const noexcept { return ok_; }

  void start();
  void stop();  // any thread

  struct served {
    std::string id;
    boost::asio::ip::tcp::endpoint endpoint;
  };
  [[nodiscard]] std::vector<served> endpoints() const;
  // io thread (or before start): the shared device, nullptr when unknown.
  [[nodiscard]] station_device* device(std::string_view name) noexcept;

 private:
  std::vector<std::unique_ptr<station_device>> devices_;
  std::vector<std::pair<std::string, std::unique_ptr<sim_server>>> servers_;
  bool ok_ = false;
};

// The instrument of `model` attached to a device terminal (nullptr: model not supported).
[[nodiscard]] std::unique_ptr<sim_instrument> make_station_instrument(std::string_view model,
                                                                      station_device& dev,
                                                                      std::string terminal,
                                                                      std::uint64_t seed);

}  // namespace semilab::sim
