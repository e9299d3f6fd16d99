#include <semilab/sim/keithley2450.hpp>
#include <semilab/sim/scpi_parser.hpp>
#include <semilab/sim/smu.hpp>

#include <cmath>

namespace semilab::sim {
namespace {

constexpr double kThermalVoltage = 1.380649e-23 * 300.0 / 1.602176634e-19;

double softplus(double x) noexcept { return x > 30 ? x : std::log1p(std::exp(x)); }

double mosfet_current(double vgs) noexcept {
  double nvt = kMosfetNss * kThermalVoltage;
  double s = nvt * softplus((vgs - kMosfetVth - kMosfetVds / 2) / nvt);
  return kMosfetBeta * kMosfetVds * s;
}

}  // namespace

double dut_current(smu_dut dut, double volts) noexcept {
  switch (dut) {
    case smu_dut::diode: return keithley2450::diode_current(volts);
    case smu_dut::mosfet: return mosfet_current(volts);
    case smu_dut::resistor: return volts / kResistorOhms;
  }
  return 0;
}

double dut_voltage(smu_dut dut, double amps) noexcept {
  switch (dut) {
    case smu_dut::diode: return keithley2450::diode_voltage(amps);
    case smu_dut::resistor: return amps * kResistorOhms;
    case smu_dut::mosfet: {
      // Gate voltage that gives this drain current (monotonic): bisection over +-210 V.
      if (amps <= 0) return -210.0;
      double lo = -210.0, hi = 210.0;
      if (mosfet_current(hi) < amps) return hi;
      for (int i = 0; i < 200; ++i) {
        double mid = 0.5 * (lo + hi);
        (mosfet_current(mid) < amps ? lo : hi) = mid;
      }
      return 0.5 * (lo + hi);
    }
  }
  return 0;
}

bool parse_dut(std::string_view name, smu_dut& out) noexcept {
  std::string n = upper_ascii(name);
  if (n == "DIODE") out = smu_dut::diode;
  else if (n == "MOSFET") out = smu_dut::mosfet;
  else if (n == "RES" || n == "RESISTOR") out = smu_dut::resistor;
  else return false;
  return true;
}

void smu_log::level(double v, bool output) {
  std::lock_guard lock(mutex_);
  if (events_.size() < kMaxEvents)
    events_.push_back({std::chrono::steady_clock::now(), smu_event::kind::level, v, output, {}});
}

void smu_log::output(bool on, double level) {
  std::lock_guard lock(mutex_);
  if (events_.size() < kMaxEvents)
    events_.push_back({std::chrono::steady_clock::now(), smu_event::kind::output, level, on, {}});
}

void smu_log::command(std::string_view text, bool output) {
  std::lock_guard lock(mutex_);
  if (events_.size() < kMaxEvents)
    events_.push_back({std::chrono::steady_clock::now(), smu_event::kind::command, 0, output,
                       std::string(text)});
}

std::vector<smu_event> smu_log::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

std::vector<double> smu_log::levels_while_on() const {
  std::lock_guard lock(mutex_);
  std::vector<double> out;
  for (const auto& e : events_)
    if (e.what == smu_event::kind::level && e.output) out.push_back(e.level);
  return out;
}

void smu_log::clear() {
  std::lock_guard lock(mutex_);
  events_.clear();
}

}  // namespace semilab::sim
