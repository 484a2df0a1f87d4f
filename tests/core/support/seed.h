// Seeds for randomized tests. Every randomized test takes its seed from here: $BOUQUET_SEED when
// set (to reproduce a run), else the test's own default; the seed and the command that reproduces
// the run are printed and attached to the test's XML record.
#pragma once

#include <cstdint>
#include <string>

namespace bouquet::test {

uint64_t test_seed(uint64_t fallback);
// "BOUQUET_SEED=<seed> <this binary> --gtest_filter=<this test>".
std::string reproduce_command(uint64_t seed);

}  // namespace bouquet::test
