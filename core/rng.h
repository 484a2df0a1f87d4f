// The one random number generator of reproducible code: xoshiro256** seeded through splitmix64,
// with its own distributions (std:: distributions differ between standard libraries, so a seed
// would not reproduce a run elsewhere). Each node owns one, derived from the run's seed; there is
// no global generator.
#pragma once

#include <cstdint>

namespace bouquet::core {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // An independent generator for sub-stream `stream` (a node id, a run index), reproducible from
  // this generator's seed alone and unaffected by how much this one has been drawn from.
  Rng derive(uint64_t stream) const;

  uint64_t next_u64();
  // Uniform in [0, 1) with 53 random bits.
  double uniform01();
  // Uniform in [lo, hi).
  double uniform(double lo, double hi);
  // Uniform integer in [0, n), without modulo bias. n must be positive.
  uint64_t below(uint64_t n);
  // True with probability p.
  bool bernoulli(double p);
  // Exponentially distributed with the given mean (inverse transform).
  double exponential(double mean);
  // Standard normal (Box-Muller, no cached second value so the stream stays simple to reason about).
  double normal();

  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
  uint64_t s_[4];
};

}  // namespace bouquet::core
