#pragma once
// Private numerical helpers of semilab_methods.
#include <array>
#include <cstddef>
#include <functional>
#include <optional>
#include <semilab/methods/extraction.hpp>
#include <semilab/schemas/record.hpp>
#include <string>
#include <vector>

namespace semilab::methods::detail {

// Ordinary least squares y ~ sum_j beta_j * X[i][j] by modified Gram-Schmidt QR on
// norm-scaled columns (the diode design [ln I, 1, I] spans ten decades of scale).
struct lsq_fit {
  std::vector<double> beta;
  std::vector<std::vector<double>> cov;  // sigma^2 (X^T X)^-1, sigma^2 = SSR/(N-k); 0 when N == k
  double ssr = 0;
  std::size_t dof = 0;
  [[nodiscard]] double se(std::size_t j) const;
};
std::optional<lsq_fit> least_squares(const std::vector<std::vector<double>>& x,
                                     const std::vector<double>& y);

// y = slope*x + intercept with standard errors and their covariance.
struct line_fit {
  double slope = 0, intercept = 0;
  double se_slope = 0, se_intercept = 0, cov = 0;
  double ssr = 0;
  std::size_t n = 0;
};
std::optional<line_fit> fit_line(const std::vector<double>& x, const std::vector<double>& y);

// Local derivative dy/dx at each index: slope of a least-squares line over `half` neighbours on
// each side (one-sided at the ends; half = 1 is the central difference on a uniform grid).
std::vector<double> local_slope(const std::vector<double>& x, const std::vector<double>& y,
                                std::size_t half);

// +1 strictly increasing, -1 strictly decreasing, 0 otherwise.
int monotonic(const std::vector<double>& x);

parameter param(std::string name, double value, std::string unit,
                std::optional<double> uncertainty = std::nullopt);

std::string fmt(double v);  // %.6g

}  // namespace semilab::methods::detail
