// The figures a sweep records per run, computed from what `bouquet sim --out` wrote.
#include "sim/sweep/metrics.h"

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

namespace bouquet::sim::sweep {
namespace {

using ::testing::HasSubstr;

std::string client(const char* name, bool finished, int tokens, double measured_s, int recoveries, int done,
                   int failed) {
  return fmt::format(R"({{"name": "{}", "kind": "generate", "finished": {}, "error": "", "steps": {}, "tokens": {},
    "measured_s": {}, "recoveries": {}, "positions_replayed": {}, "sessions_finished": {}, "sessions_failed": {},
    "started_s": 0, "ended_s": 100, "steps_per_s": {}, "tokens_per_s": {}}})",
                     name, finished ? "true" : "false", tokens, tokens, measured_s, recoveries, 10 * recoveries, done,
                     failed, tokens / measured_s, tokens / measured_s);
}

const std::string kRun = fmt::format(R"({{"scenario": "s", "seed": 3, "result": {{"seed": 3, "end_s": 100,
  "messages": 500, "bytes": 12345, "step_latency_p50_s": 0.25, "step_latency_p99_s": null,
  "uncovered_s": 30, "coverage_watched_s": 120,
  "clients": [{}, {}]}}}})",
                                     client("a", true, 100, 50, 1, 3, 1), client("b", false, 30, 60, 2, 1, 0));

TEST(SweepMetrics, ClientFiguresAreMeansSumsAndShares) {
  const std::vector<double> v =
      extract_metrics(kRun, {"tokens_per_s", "total_tokens_per_s", "finished_share", "recoveries", "positions_replayed",
                             "finished_session_share", "sessions_failed", "tokens", "end_s", "messages", "bytes"});
  EXPECT_DOUBLE_EQ(v[0], (2.0 + 0.5) / 2);  // a: 100 tokens in 50 s; b: 30 in 60 s
  EXPECT_DOUBLE_EQ(v[1], 2.5);
  EXPECT_DOUBLE_EQ(v[2], 0.5);  // b did not finish
  EXPECT_DOUBLE_EQ(v[3], 3);
  EXPECT_DOUBLE_EQ(v[4], 30);
  EXPECT_DOUBLE_EQ(v[5], 4.0 / 5);  // 4 sessions finished, 1 failed
  EXPECT_DOUBLE_EQ(v[6], 1);
  EXPECT_DOUBLE_EQ(v[7], 130);
  EXPECT_DOUBLE_EQ(v[8], 100);
  EXPECT_DOUBLE_EQ(v[9], 500);
  EXPECT_DOUBLE_EQ(v[10], 12345);
  const std::vector<double> latency = extract_metrics(kRun, {"step_latency_p50_s", "step_latency_p99_s"});
  EXPECT_DOUBLE_EQ(latency[0], 0.25);
  EXPECT_TRUE(std::isnan(latency[1]));  // no single-token step completed
  const std::vector<double> coverage = extract_metrics(kRun, {"uncovered_s", "uncovered_share"});
  EXPECT_DOUBLE_EQ(coverage[0], 30);
  EXPECT_DOUBLE_EQ(coverage[1], 0.25);
}

TEST(SweepMetrics, RowsGiveTheirSimulatedFigureAndNothingWhenUnfinished) {
  const std::string rows = R"({"scenario": "s", "seed": 1, "rows": [
    {"name": "fast", "metric": "steps_per_s", "simulated": 1.5},
    {"name": "slow", "metric": "steps_per_s", "simulated": null}]})";
  const std::vector<double> v = extract_metrics(rows, {"rows.fast", "rows.slow"});
  EXPECT_DOUBLE_EQ(v[0], 1.5);
  EXPECT_TRUE(std::isnan(v[1]));
  EXPECT_THROW(extract_metrics(rows, {"rows.other"}), std::runtime_error);
  EXPECT_THROW(extract_metrics(rows, {"tokens_per_s"}), std::runtime_error);
}

TEST(SweepMetrics, NoSessionEndedMeansNoShareAndBrokenOutputIsAnError) {
  const std::string idle = fmt::format(R"({{"seed": 1, "result": {{"seed": 1, "end_s": 5, "messages": 0, "bytes": 0,
    "clients": [{}]}}}})",
                                       client("a", false, 0, 0.5, 0, 0, 0));
  EXPECT_TRUE(std::isnan(extract_metrics(idle, {"finished_session_share"})[0]));
  try {
    extract_metrics("{\"result\": 3", {"tokens_per_s"});
    FAIL() << "half a file was read";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("not JSON"));
  }
  EXPECT_THROW(extract_metrics(R"({"result": {"clients": [{"name": "a"}]}})", {"tokens_per_s"}), std::runtime_error);
}

TEST(SweepMetrics, EveryKnownMetricIsFoundAndRowsAreGeneric) {
  bool known = false;
  for (const auto& m : known_metrics()) {
    EXPECT_EQ(find_metric(m.name, &known).name, m.name);
    EXPECT_TRUE(known);
  }
  find_metric("rows.gen-1gbit", &known);
  EXPECT_TRUE(known);
  find_metric("rows.", &known);
  EXPECT_FALSE(known);
  find_metric("speed", &known);
  EXPECT_FALSE(known);
}

}  // namespace
}  // namespace bouquet::sim::sweep
