#include "sim/sweep/stats.h"

#include "core/check.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace bouquet::sim::sweep {
namespace {

// The continued fraction of I_x(a, b) (modified Lentz), which converges fast for
// x < (a + 1) / (a + b + 2); the caller uses the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
double beta_continued_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEpsilon = 1e-15;
  double c = 1;
  double d = 1 - (a + b) * x / (a + 1);
  if (std::abs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double fraction = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    // Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
    double term = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + term * d;
    c = 1 + term / c;
    if (std::abs(d) < kTiny) d = kTiny;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1 / d;
    fraction *= d * c;
    // Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
    term = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + term * d;
    c = 1 + term / c;
    if (std::abs(d) < kTiny) d = kTiny;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double delta = d * c;
    fraction *= delta;
    if (std::abs(delta - 1) < kEpsilon) break;
  }
  return fraction;
}

}  // namespace

double incomplete_beta(double a, double b, double x) {
  BOUQUET_CHECK(a > 0 && b > 0 && x >= 0 && x <= 1, "incomplete_beta needs a, b > 0 and x in [0, 1]");
  if (x == 0 || x == 1) return x;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  const double front = std::exp(log_front);
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

double student_t_cdf(double t, double dof) {
  BOUQUET_CHECK(dof > 0, "Student's t needs positive degrees of freedom");
  const double tail = 0.5 * incomplete_beta(dof / 2, 0.5, dof / (dof + t * t));
  return t >= 0 ? 1 - tail : tail;
}

double student_t_quantile(double p, double dof) {
  BOUQUET_CHECK(p > 0 && p < 1, "a quantile needs p in (0, 1)");
  if (p < 0.5) return -student_t_quantile(1 - p, dof);
  // Bracket, then bisect: the CDF is monotone, and 200 halvings reach double precision.
  double low = 0;
  double high = 1;
  while (student_t_cdf(high, dof) < p) high *= 2;
  for (int i = 0; i < 200 && high - low > 1e-13 * high; ++i) {
    const double mid = 0.5 * (low + high);
    (student_t_cdf(mid, dof) < p ? low : high) = mid;
  }
  return 0.5 * (low + high);
}

Summary summarize(std::span<const double> values) {
  std::vector<double> finite;
  for (double v : values) {
    if (std::isfinite(v)) finite.push_back(v);
  }
  std::sort(finite.begin(), finite.end());
  Summary out;
  out.n = finite.size();
  if (finite.empty()) {
    out.mean = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  double sum = 0;
  for (double v : finite) sum += v;
  out.mean = sum / static_cast<double>(out.n);
  if (out.n < 2) return out;
  double squares = 0;
  for (double v : finite) squares += (v - out.mean) * (v - out.mean);
  const double sd = std::sqrt(squares / static_cast<double>(out.n - 1));
  const double half =
      student_t_quantile(0.975, static_cast<double>(out.n - 1)) * sd / std::sqrt(static_cast<double>(out.n));
  out.ci95_low = out.mean - half;
  out.ci95_high = out.mean + half;
  return out;
}

}  // namespace bouquet::sim::sweep
