#include "core/spot_check.h"

#include <algorithm>
#include <cmath>

namespace bouquet::core {

double spot_check_tolerance(Compression compression, double rtol) {
  switch (compression) {
    case Compression::none:
      return rtol;
    case Compression::float16:
      // Each side rounds to within 2^-11 of its value, so the two within 2^-10 of the magnitude.
      return rtol + std::ldexp(1.0, -10);
    case Compression::int8_blockwise:
      // Each side within half a step of its block (absmax/127, the scale itself rounded to
      // float16): one step between them, plus the scales' own rounding.
      return rtol + (1.0 / 127) * (1 + std::ldexp(1.0, -10));
  }
  return rtol;
}

namespace {

bool readable(const Activation& a) {
  return dynamic_cast<const FloatActivationData*>(a.data.get()) != nullptr ||
         dynamic_cast<const PackedActivationData*>(a.data.get()) != nullptr;
}

}  // namespace

bool outputs_agree(const Activation& a, const Activation& b, Compression compression, double rtol) {
  if (!a.data || !b.data || !readable(a) || !readable(b)) return true;
  if (a.shape != b.shape) return false;
  const std::vector<float> x = a.to_floats(), y = b.to_floats();
  const uint64_t width = a.shape.empty() ? 1 : std::max<uint64_t>(a.shape.back(), 1);
  const double tolerance = spot_check_tolerance(compression, rtol);
  for (uint64_t begin = 0; begin < x.size(); begin += width) {
    const uint64_t end = std::min<uint64_t>(begin + width, x.size());
    double magnitude = 0, difference = 0;
    for (uint64_t i = begin; i < end; ++i) {
      const double u = x[i], v = y[i];
      if (std::isnan(u) != std::isnan(v)) return false;
      if (std::isnan(u)) continue;
      if (std::isinf(u) || std::isinf(v)) {
        if (u != v) return false;
        continue;
      }
      magnitude = std::max({magnitude, std::abs(u), std::abs(v)});
      difference = std::max(difference, std::abs(u - v));
    }
    // A tiny absolute floor: vectors of zeros (or denormals) agree with themselves.
    if (difference > tolerance * magnitude + 1e-30) return false;
  }
  return true;
}

std::string_view to_string(SpotCheckOutcome outcome) {
  switch (outcome) {
    case SpotCheckOutcome::pending:
      return "pending";
    case SpotCheckOutcome::agreed:
      return "agreed";
    case SpotCheckOutcome::liar_found:
      return "liar_found";
    case SpotCheckOutcome::checker_lied:
      return "checker_lied";
    case SpotCheckOutcome::undecided:
      return "undecided";
    case SpotCheckOutcome::no_checker:
      return "no_checker";
    case SpotCheckOutcome::checker_failed:
      return "checker_failed";
    case SpotCheckOutcome::abandoned:
      return "abandoned";
  }
  return "unknown";
}

}  // namespace bouquet::core
