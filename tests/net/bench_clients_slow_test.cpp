// `bouquet bench-swarm --clients` as a person runs it, on a small model so it takes seconds: two
// server processes, every client generating at once, batching on and off, one row per (clients,
// batching) with positive rates; with a long prompt, one row per chunking setting; bad numbers of
// clients are refused with the flag's name.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>

#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

TEST(BenchClientsCommand, ReportsEveryClientCountWithBatchingOnAndOff) {
  const auto dir = testing::fresh_dir("bench-clients");
  const auto r = testing::run_bouquet(
      fmt::format("bench-swarm --clients 1,3 --blocks 2 --hidden 128 --new-tokens 4 --prompt-tokens 2 --dir {} --json",
                  dir.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto json = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  ASSERT_EQ(json.at("rows").size(), 4u) << r.output;
  std::set<std::pair<int64_t, bool>> seen;
  for (const auto& row : json.at("rows")) {
    seen.emplace(row.at("clients").get<int64_t>(), row.at("batching").get<bool>());
    EXPECT_GT(row.at("aggregate_tokens_per_s").get<double>(), 0) << row.dump();
    EXPECT_GT(row.at("p50_step_ms").get<double>(), 0) << row.dump();
    EXPECT_LE(row.at("p50_step_ms").get<double>(), row.at("p99_step_ms").get<double>()) << row.dump();
  }
  EXPECT_EQ(seen, (std::set<std::pair<int64_t, bool>>{{1, true}, {3, true}, {1, false}, {3, false}}));
}

TEST(BenchClientsCommand, LongPromptReportsTheDecodersWithChunkedPrefillOnAndOff) {
  const auto dir = testing::fresh_dir("bench-clients-long");
  const auto r = testing::run_bouquet(
      fmt::format("bench-swarm --clients 2 --long-prompt 40 --prefill-chunk 4 --blocks 2 --hidden 128 --new-tokens 4 "
                  "--prompt-tokens 2 --dir {} --json",
                  dir.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto json = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(json.at("long_prompt_tokens").get<int64_t>(), 40);
  ASSERT_EQ(json.at("rows").size(), 2u) << r.output;
  std::set<bool> chunking;
  for (const auto& row : json.at("rows")) {
    chunking.insert(row.at("chunking").get<bool>());
    EXPECT_TRUE(row.at("batching").get<bool>()) << row.dump();
    EXPECT_GT(row.at("long_prefill_s").get<double>(), 0) << row.dump();
    EXPECT_LE(row.at("p99_step_ms").get<double>(), row.at("max_step_ms").get<double>()) << row.dump();
  }
  EXPECT_EQ(chunking, (std::set<bool>{true, false}));
}

TEST(BenchClientsCommand, BadClientCountsAreRefusedByName) {
  for (const char* clients : {"0", "1,x", "300"}) {
    const auto r = testing::run_bouquet(fmt::format("bench-swarm --clients {}", clients), /*want_stderr=*/true);
    EXPECT_NE(r.status, 0) << clients;
    EXPECT_NE(r.output.find("--clients"), std::string::npos) << clients << ": " << r.output;
  }
}

}  // namespace
}  // namespace bouquet::net
