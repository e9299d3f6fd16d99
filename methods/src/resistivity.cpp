#include <algorithm>
#include <cmath>
#include <numbers>
#include <semilab/methods/resistivity.hpp>

#include "fit.hpp"
#include "window.hpp"

namespace semilab::methods {

using namespace detail;

result<double> smits_f2(double d_over_s) {
  const double x2 = d_over_s * d_over_s;
  if (!(d_over_s > std::sqrt(3.0)) || !std::isfinite(d_over_s))
    return make_error(errc::bad_input, "four-point: d/s = " + fmt(d_over_s) +
                                           " outside the Smits formula (needs d/s > sqrt 3)");
  return std::numbers::ln2 / (std::numbers::ln2 + std::log((x2 + 3) / (x2 - 3)));
}

result<double> g7(double t_over_s) {
  if (!(t_over_s > 0) || !std::isfinite(t_over_s))
    return make_error(errc::bad_input, "four-point: t/s must be > 0");
  const double r = 1.0 / t_over_s;  // s/t
  // Terms fall as 3 r^2 / (16 n^3): sum to N, add the integral of the tail.
  constexpr int kTerms = 200000;
  double sum = 0;
  for (int n = kTerms; n >= 1; --n) {  // smallest first
    const double tn = 2.0 * n;
    sum += 1.0 / std::sqrt(r * r + tn * tn) - 1.0 / std::sqrt(4 * r * r + tn * tn);
  }
  sum += 3 * r * r / (32.0 * kTerms * kTerms);
  return 1 + 4 * r * sum;
}

result<double> thickness_factor(double t_over_s) {
  auto g = g7(t_over_s);
  if (!g) return g.error();
  return 2 * std::numbers::ln2 / t_over_s / *g;
}

result<extraction> analyze_four_point(std::span<const sample> readings,
                                      const four_point_geometry& g) {
  constexpr std::string_view m = "four-point";
  if (!(g.spacing > 0)) return make_error(errc::bad_input, "four-point: probe spacing must be > 0");
  std::vector<double> i, v;
  std::size_t flagged_n = 0;
  for (auto& r : readings) {
    if (flagged(r)) {
      ++flagged_n;
      continue;
    }
    i.push_back(r.x);
    v.push_back(r.y);
  }
  if (i.size() < 2)
    return make_error(errc::insufficient_data, "four-point: " + std::to_string(i.size()) +
                                                   " usable readings; at least a "
                                                   "+I/-I pair needed");
  std::vector<double> levels;
  for (double x : i) {
    bool seen = false;
    for (double l : levels) seen = seen || std::fabs(l - x) <= 1e-12 * std::fabs(x);
    if (!seen) levels.push_back(x);
  }
  if (levels.size() < 2)
    return make_error(errc::insufficient_data,
                      "four-point: all readings at one current level; "
                      "reverse the current or add levels");
  auto f = fit_line(i, v);
  if (!f) return make_error(errc::degenerate_fit, "four-point: V(I) fit is singular");
  if (!(f->slope > 0))
    return make_error(errc::bad_input, "four-point: V/I not positive (" + fmt(f->slope) + " ohm)");
  extraction ex;
  ex.method = std::string(m);
  ex.version = std::string(kFourPointVersion);
  if (flagged_n > 0)
    ex.warnings.push_back(std::to_string(flagged_n) + " flagged reading(s) excluded");
  bool has_pos = false, has_neg = false;
  for (double x : i) (x > 0 ? has_pos : has_neg) = true;
  if (!(has_pos && has_neg))
    ex.warnings.push_back(
        "no current reversal: thermo-EMF offsets are removed only by the fit "
        "intercept");
  if (levels.size() >= 3) {
    double worst = 0;
    for (std::size_t k = 0; k < i.size(); ++k) {
      const double pred = f->slope * i[k] + f->intercept;
      if (v[k] != 0) worst = std::max(worst, std::fabs(v[k] - pred) / std::fabs(pred));
    }
    ex.parameters.push_back(param("linearity", worst, "1"));
    if (worst > g.linearity_limit)
      ex.warnings.push_back("V(I) not linear: largest relative residual " + fmt(worst) +
                            " (limit " + fmt(g.linearity_limit) + "): heating or contacts");
  } else {
    ex.warnings.push_back("linearity not checked: fewer than 3 current levels");
  }
  double f2 = 1;
  if (g.diameter > 0) {
    auto r = smits_f2(g.diameter / g.spacing);
    if (!r) return r.error();
    f2 = *r;
  }
  const double rsh = kPiOverLn2 * f2 * f->slope;
  const double se_r = f->se_slope;
  ex.parameters.push_back(param("r", f->slope, "ohm", se_r));
  ex.parameters.push_back(param("f2", f2, "1"));
  ex.parameters.push_back(param("r_sheet", rsh, "ohm/sq", kPiOverLn2 * f2 * se_r));
  ex.windows.push_back({"I", *std::min_element(i.begin(), i.end()),
                        *std::max_element(i.begin(), i.end()), i.size()});
  if (g.thickness > 0) {
    const double ts = g.thickness / g.spacing;
    auto tf = thickness_factor(ts);
    if (!tf) return tf.error();
    if (ts > 1.0)
      ex.warnings.push_back("t/s > 1: thick-sample regime, the image series is still applied");
    ex.parameters.push_back(param("thickness_factor", *tf, "1"));
    ex.parameters.push_back(param("resistivity", rsh * g.thickness * *tf, "ohm*m",
                                  kPiOverLn2 * f2 * se_r * g.thickness * *tf));
  }
  return ex;
}

result<extraction> analyze_four_point_dual(double ra, double rb) {
  if (!(ra > 0) || !(rb > 0))
    return make_error(errc::bad_input, "four-point dual: Ra and Rb must be > 0");
  const double k = ra / rb;
  extraction ex;
  ex.method = "four-point-dual";
  ex.version = std::string(kFourPointVersion);
  ex.parameters.push_back(param("k_ratio", k, "1"));
  ex.parameters.push_back(param("r_sheet", ra * (-14.696 + 25.173 * k - 7.872 * k * k), "ohm/sq"));
  if (k < 1.18 || k > 1.32)
    ex.warnings.push_back("K = Ra/Rb = " + fmt(k) +
                          " outside 1.18..1.32 where the Rymaszewski "
                          "fit holds (infinite sheet: 1.262)");
  return ex;
}

result<vdp_solution> solve_van_der_pauw(double r_a, double r_b) {
  if (!(r_a > 0) || !(r_b > 0) || !std::isfinite(r_a) || !std::isfinite(r_b))
    return make_error(errc::bad_input, "vdp: R_A and R_B must be finite and > 0");
  const double pi = std::numbers::pi;
  auto f = [&](double z) { return std::exp(-pi * r_a * z) + std::exp(-pi * r_b * z) - 1; };
  auto df = [&](double z) {
    return -pi * r_a * std::exp(-pi * r_a * z) - pi * r_b * std::exp(-pi * r_b * z);
  };
  // f falls from 1 (z = 0) to -1: bracket the root, then Newton kept inside the bracket.
  double lo = 0, hi = 2 * std::numbers::ln2 / (pi * std::min(r_a, r_b));
  while (f(hi) > 0) hi *= 2;
  double z = 2 * std::numbers::ln2 / (pi * (r_a + r_b));  // NIST start value
  vdp_solution s;
  for (int it = 1; it <= 100; ++it) {
    s.iterations = it;
    const double fz = f(z);
    if (fz == 0) {
      s.r_sheet = 1 / z;
      return s;
    }
    if (fz > 0)
      lo = z;
    else
      hi = z;
    const double d = df(z);
    double zn = d != 0 ? z - fz / d : NAN;
    if (std::isfinite(zn) && std::fabs(zn - z) <= 1e-14 * std::fabs(z)) {
      s.r_sheet = 1 / zn;
      return s;
    }
    // f is convex and falling and z0 lies left of the root, so Newton stays in the bracket;
    // the bisection guards against rounding at extreme ratios.
    if (!(zn > lo && zn < hi)) {
      zn = 0.5 * (lo + hi);
      s.bisection_used = true;
      if (hi - lo <= 1e-14 * hi) {
        s.r_sheet = 1 / zn;
        return s;
      }
    }
    z = zn;
  }
  return make_error(errc::no_convergence, "vdp: no convergence in 100 iterations for R_A = " +
                                              fmt(r_a) + ", R_B = " + fmt(r_b));
}

result<extraction> analyze_van_der_pauw(const vdp_readings& r, const vdp_options& opt) {
  const double all[] = {r.r21_34, r.r12_43, r.r43_12, r.r34_21,
                        r.r32_41, r.r23_14, r.r14_23, r.r41_32};
  for (double x : all)
    if (!(x > 0) || !std::isfinite(x) || std::fabs(x) >= 9.9e37)
      return make_error(errc::bad_input,
                        "vdp: every four-terminal resistance must be finite and "
                        "> 0 (got " +
                            fmt(x) + " ohm)");
  const double ra = (r.r21_34 + r.r12_43 + r.r43_12 + r.r34_21) / 4;
  const double rb = (r.r32_41 + r.r23_14 + r.r14_23 + r.r41_32) / 4;
  auto s = solve_van_der_pauw(ra, rb);
  if (!s) return s.error();
  extraction ex;
  ex.method = "vdp";
  ex.version = std::string(kVdpVersion);
  ex.parameters.push_back(param("r_a", ra, "ohm"));
  ex.parameters.push_back(param("r_b", rb, "ohm"));
  ex.parameters.push_back(param("r_sheet", s->r_sheet, "ohm/sq"));
  ex.parameters.push_back(param("iterations", s->iterations, "1"));
  if (opt.thickness > 0)
    ex.parameters.push_back(param("resistivity", s->r_sheet * opt.thickness, "ohm*m"));
  struct pair {
    const char* a;
    double x;
    const char* b;
    double y;
  };
  const pair recip[] = {{"R21,34", r.r21_34, "R43,12", r.r43_12},
                        {"R12,43", r.r12_43, "R34,21", r.r34_21},
                        {"R32,41", r.r32_41, "R14,23", r.r14_23},
                        {"R23,14", r.r23_14, "R41,32", r.r41_32}};
  for (auto& p : recip) {
    const double dev = std::fabs(p.x - p.y) / (0.5 * (p.x + p.y));
    if (dev > opt.reciprocity_limit)
      ex.warnings.push_back(std::string("reciprocity: ") + p.a + " and " + p.b + " differ by " +
                            fmt(100 * dev) + "% (limit " + fmt(100 * opt.reciprocity_limit) +
                            "%): contacts or inhomogeneity");
  }
  const double ratio = std::max(ra / rb, rb / ra);
  if (ratio > opt.geometry_limit)
    ex.warnings.push_back("geometry: R_A/R_B = " + fmt(ra / rb) +
                          " far from 1: sample shape, "
                          "contact placement or inhomogeneity");
  if (s->bisection_used) ex.warnings.push_back("vdp solver fell back to bisection");
  return ex;
}

result<extraction> analyze_hall(const hall_readings& h, const hall_options& opt) {
  if (!(h.current > 0) || !(h.field > 0))
    return make_error(errc::bad_input, "hall: current and field must be > 0 (the +I, +B values)");
  const double vs[] = {h.v24p, h.v24n, h.v42p, h.v42n, h.v13p, h.v13n, h.v31p, h.v31n};
  for (double x : vs)
    if (!std::isfinite(x) || std::fabs(x) >= 9.9e37)
      return make_error(errc::bad_input, "hall: a Hall voltage is over range or not finite");
  const double vc = h.v24p - h.v24n, vd = h.v42p - h.v42n;
  const double ve = h.v13p - h.v13n, vf = h.v31p - h.v31n;
  const double sum = vc + vd + ve + vf;
  if (sum == 0) return make_error(errc::bad_input, "hall: the Hall voltages sum to zero");
  extraction ex;
  ex.method = "hall";
  ex.version = std::string(kHallVersion);
  parameter type;
  type.name = "carrier_type";
  type.text = sum > 0 ? "p" : "n";
  ex.parameters.push_back(type);
  double mean4 = sum / 4, ss4 = 0;
  for (double p : {vc, vd, ve, vf}) ss4 += (p - mean4) * (p - mean4);
  const double u_sum = 4 * std::sqrt(ss4 / 3 / 4);  // 4 x standard error of the mean
  const double rel_sum = u_sum / std::fabs(sum);
  ex.parameters.push_back(param("v_sum", sum, "V", u_sum));
  const double ns = 8 * h.current * h.field / (constants::q * std::fabs(sum));
  ex.parameters.push_back(param("n_sheet", ns, "m^-2", ns * rel_sum));
  const double parts[] = {vc, vd, ve, vf};
  for (double p : parts)
    if ((p > 0) != (sum > 0)) {
      ex.warnings.push_back(
          "the four field-reversed Hall voltages disagree in sign: offsets "
          "dominate or contacts are poor");
      break;
    }
  // Field-independent offsets (misalignment) relative to the Hall voltage.
  const double vh = std::fabs(sum) / 8;
  const double off = std::max({std::fabs(h.v24p + h.v24n), std::fabs(h.v42p + h.v42n),
                               std::fabs(h.v13p + h.v13n), std::fabs(h.v31p + h.v31n)}) /
                     2;
  if (off > 10 * vh)
    ex.warnings.push_back("misalignment offset " + fmt(off) + " V exceeds 10x the Hall voltage");
  if (opt.r_sheet > 0) {
    const double mu = 1 / (constants::q * ns * opt.r_sheet);
    const double rel_rs = opt.r_sheet_u > 0 ? opt.r_sheet_u / opt.r_sheet : 0;
    ex.parameters.push_back(
        param("mobility", mu, "m^2/(V*s)", mu * std::hypot(rel_sum, rel_rs)));
  } else {
    ex.warnings.push_back("no sheet resistance given: no mobility");
  }
  if (opt.thickness > 0) {
    ex.parameters.push_back(param("density", ns / opt.thickness, "m^-3", ns * rel_sum / opt.thickness));
    const double rh = opt.thickness * (sum / 8) / (h.current * h.field);
    ex.parameters.push_back(param("hall_coefficient", rh, "m^3/C", std::fabs(rh) * rel_sum));
  }
  return ex;
}

result<extraction> analyze_tlm(std::span<const sample> points, double width) {
  if (!(width > 0)) return make_error(errc::bad_input, "tlm: contact width must be > 0");
  std::vector<double> d, r;
  std::size_t excluded = 0;
  for (auto& p : points) {
    if (flagged(p)) {
      ++excluded;
      continue;
    }
    if (!(p.x > 0)) return make_error(errc::bad_input, "tlm: gap lengths must be > 0");
    d.push_back(p.x);
    r.push_back(p.y);
  }
  std::vector<double> gaps = d;
  std::sort(gaps.begin(), gaps.end());
  gaps.erase(std::unique(gaps.begin(), gaps.end()), gaps.end());
  if (gaps.size() < 3)
    return make_error(errc::insufficient_data, "tlm: " + std::to_string(gaps.size()) +
                                                   " distinct gap lengths; at least 3 needed");
  auto f = fit_line(d, r);
  if (!f) return make_error(errc::degenerate_fit, "tlm: R(d) fit is singular");
  if (!(f->slope > 0))
    return make_error(errc::bad_input, "tlm: R does not grow with the gap length");
  const double a = f->slope, b = f->intercept;
  const double va = f->se_slope * f->se_slope, vb = f->se_intercept * f->se_intercept, c = f->cov;
  const double lt = b / (2 * a);
  const double dlt_da = -b / (2 * a * a), dlt_db = 1 / (2 * a);
  const double se_lt = std::sqrt(
      std::max(0.0, dlt_da * dlt_da * va + dlt_db * dlt_db * vb + 2 * dlt_da * dlt_db * c));
  const double rhoc = width * b * b / (4 * a);  // Rsh * LT^2
  const double dr_da = -width * b * b / (4 * a * a), dr_db = width * b / (2 * a);
  const double se_rhoc =
      std::sqrt(std::max(0.0, dr_da * dr_da * va + dr_db * dr_db * vb + 2 * dr_da * dr_db * c));
  extraction ex;
  ex.method = "tlm";
  ex.version = std::string(kTlmVersion);
  ex.parameters.push_back(param("r_contact", b / 2, "ohm", f->se_intercept / 2));
  ex.parameters.push_back(param("r_sheet", a * width, "ohm/sq", f->se_slope * width));
  ex.parameters.push_back(param("l_transfer", lt, "m", se_lt));
  ex.parameters.push_back(param("rho_c", rhoc, "ohm*m^2", se_rhoc));
  ex.windows.push_back({"d", gaps.front(), gaps.back(), d.size()});
  if (excluded > 0) ex.warnings.push_back(std::to_string(excluded) + " flagged point(s) excluded");
  if (b < 0)
    ex.warnings.push_back("negative intercept: contact resistance below the fit's resolution");
  return ex;
}

}  // namespace semilab::methods
