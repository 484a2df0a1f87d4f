#include "tests/core/support/seed.h"

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace bouquet::test {

std::string reproduce_command(uint64_t seed) {
  std::error_code ec;
  auto binary = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = info ? fmt::format("{}.{}", info->test_suite_name(), info->name()) : std::string("*");
  return fmt::format("BOUQUET_SEED={} {} --gtest_filter='{}'", seed, ec ? std::string("core_tests") : binary.string(),
                     filter);
}

uint64_t test_seed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("BOUQUET_SEED"); env && *env) {
    seed = std::strtoull(env, nullptr, 0);
  }
  fmt::print("seed {} (reproduce: {})\n", seed, reproduce_command(seed));
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

}  // namespace bouquet::test
