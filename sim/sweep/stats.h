// Summaries over seeds: the mean and a two-sided 95% confidence interval from Student's t
// distribution (the runs of one point are few, so the normal quantile would be too narrow).
#pragma once

#include <cstddef>
#include <optional>
#include <span>

namespace bouquet::sim::sweep {

struct Summary {
  size_t n = 0;     // values summarized (NaNs are left out by summarize())
  double mean = 0;  // NaN when n == 0
  // mean -/+ t(0.975, n-1) * s / sqrt(n); absent when n < 2.
  std::optional<double> ci95_low;
  std::optional<double> ci95_high;
};

// Regularized incomplete beta function I_x(a, b), for a, b > 0 and x in [0, 1].
double incomplete_beta(double a, double b, double x);
// P(T <= t) for Student's t with `dof` > 0 degrees of freedom.
double student_t_cdf(double t, double dof);
// The t with P(T <= t) = p, for p in (0, 1).
double student_t_quantile(double p, double dof);

// Mean and 95% interval of the finite values (NaN stands for "no value": a run that did not
// produce the metric). The values are sorted before summing, so the order runs finished in
// never changes the last digit.
Summary summarize(std::span<const double> values);

}  // namespace bouquet::sim::sweep
