#pragma once
// Synthetic data of the reference cases, generated from the models of
// measurement-methods.md section 9 (300 K, CODATA 2018).
#include <cmath>
#include <semilab/methods/extraction.hpp>
#include <vector>

namespace semilab::methods::test {

inline constexpr double kVt = constants::k * 300.0 / constants::q;

// T1: V = n Vt ln(I/I0 + 1) + I Rs at `count` log-spaced currents.
inline std::vector<sample> diode_data(double n, double i0, double rs, double i_lo, double i_hi,
                                      int count) {
  std::vector<sample> d;
  for (int k = 0; k < count; ++k) {
    const double i = i_lo * std::pow(i_hi / i_lo, static_cast<double>(k) / (count - 1));
    d.push_back({n * kVt * std::log(i / i0 + 1) + i * rs, i, 0});
  }
  return d;
}

inline double softplus(double x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

// T2: ID = beta VDS s/(1 + theta s), s = n Vt softplus((VGS - Vth - VDS/2)/(n Vt)).
inline double mosfet_id(double vgs, double theta) {
  const double beta = 400e-4 * 3.4531e-3 * 10, vds = 0.05, vth = 0.5, nss = 1.2;
  const double s = nss * kVt * softplus((vgs - vth - vds / 2) / (nss * kVt));
  return beta * vds * s / (1 + theta * s);
}

inline std::vector<sample> mosfet_data(double theta) {
  std::vector<sample> d;
  for (int k = 0; k <= 380; ++k) {
    const double vg = -0.5 + 0.01 * k;
    d.push_back({vg, mosfet_id(vg, theta), 0});
  }
  return d;
}

}  // namespace semilab::methods::test
