// Scenario files are read strictly: every mistake is reported with file, line and key before
// anything runs, and --set / row overrides land where they say.
#include "sim/scenario.h"
#include "sim/yaml_fields.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace bouquet::sim {
namespace {

using ::testing::HasSubstr;

// Line numbers below refer to this text (line 1 is "version: 1").
const char* kBase = R"(version: 1
name: tiny
seed: 7
duration_s: 100
network: {model: CM02, why: exact latency plus size over bandwidth}
model: {name: bloom-176b, weights: int8}
cost:
  efficiency: {int8: 0.5}
  block_overhead_s: 0
  request_overhead_s: 0
  client_efficiency: 1
regions:
  - {name: lab, up_bps: 1e9, down_bps: 1e9, latency_s: 0.001}
servers:
  - name: s
    count: 3
    gpu: a100-80gb
    region: lab
    blocks: [0, 24]
  - {name: t, gpu: a100-80gb, region: lab, blocks: [24, 70]}
clients:
  - name: c
    device: cpu-32core
    region: lab
    work: {kind: generate, new_tokens: 10}
)";

std::string error_of(const std::string& text, std::vector<std::string> overrides = {}) {
  try {
    load_scenario_text(text, "tiny.yaml", overrides);
  } catch (const ScenarioError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(Scenario, ReadsEveryField) {
  // The t span is too big for one A100 in int8 (46 blocks = 113 GB), so give it two of them.
  std::string text = replace(kBase, "blocks: [24, 70]}",
                             "blocks: [24, 47]}\n  - {name: u, gpu: a100-80gb, region: lab, blocks: [47, 70]}");
  ScenarioFile file = load_scenario_text(text, "tiny.yaml", {});
  const Scenario& s = file.base;
  EXPECT_EQ(s.name, "tiny");
  EXPECT_EQ(s.seed, 7u);
  EXPECT_EQ(s.model.wire_compression, "none");  // a default
  EXPECT_DOUBLE_EQ(s.cost.of(WeightFormat::int8).compute_eff, 0.5);
  ASSERT_EQ(s.servers.size(), 3u);
  EXPECT_EQ(s.servers[0].count, 3);
  EXPECT_EQ(s.servers[0].blocks->end, 24);
  EXPECT_FALSE(s.servers[0].link.up_bps.has_value());  // taken from the region
  EXPECT_EQ(s.clients[0].work.new_tokens, 10);
  EXPECT_EQ(instance_names("s", 3), (std::vector<std::string>{"s-0", "s-1", "s-2"}));
}

TEST(Scenario, RejectsAnUnknownKeyWithItsLine) {
  std::string text = replace(kBase, "    region: lab\n    blocks", "    region: lab\n    colour: red\n    blocks");
  EXPECT_THAT(error_of(text), HasSubstr("tiny.yaml:19:5: servers.0.colour: unknown key"));
}

TEST(Scenario, RejectsAMissingKeyAtItsParent) {
  std::string text = replace(kBase, "    gpu: a100-80gb\n", "");
  EXPECT_THAT(error_of(text), HasSubstr("tiny.yaml:15:5: servers.0: missing required key 'gpu'"));
}

TEST(Scenario, RejectsImpossibleValues) {
  EXPECT_THAT(error_of(replace(kBase, "up_bps: 1e9", "up_bps: -5")),
              HasSubstr("tiny.yaml:13:25: regions.0.up_bps: must be a finite number in [1, 1e+15], got -5"));
  EXPECT_THAT(error_of(replace(kBase, "blocks: [24, 70]", "blocks: [24, 71]")),
              HasSubstr("servers.1.blocks: [24, 71) is not a span of bloom-176b's blocks [0, 70)"));
  EXPECT_THAT(error_of(replace(kBase, "gpu: a100-80gb\n", "gpu: h900\n")),
              HasSubstr("tiny.yaml:17:10: servers.0.gpu: unknown GPU 'h900'"));
  EXPECT_THAT(error_of(replace(kBase, "weights: int8", "weights: int3")),
              HasSubstr("model.weights: 'int3' is not one of: f32, f16, int8, nf4"));
  EXPECT_THAT(error_of(replace(kBase, "{int8: 0.5}", "{int8: 1.5}")),
              HasSubstr("cost.efficiency.int8: must be a finite number in [1e-06, 1], got 1.5"));
  EXPECT_THAT(error_of(replace(kBase, "seed: 7", "seed: seven")),
              HasSubstr("tiny.yaml:3:7: seed: expected a number, got 'seven'"));
}

TEST(Scenario, RejectsSpansThatDoNotFitTheGpu) {
  // 46 BLOOM blocks in int8 are 113 GB; an A100 holds 86 GB.
  EXPECT_THAT(error_of(kBase), HasSubstr("servers.1.blocks: 46 blocks of bloom-176b in int8 take 113.5 GB"));
}

TEST(Scenario, RejectsUncoveredBlocksAndBadReferences) {
  std::string fits = replace(kBase, "blocks: [24, 70]}", "blocks: [24, 50]}");
  EXPECT_THAT(error_of(fits), HasSubstr("no server ever holds block 50 of bloom-176b"));
  std::string fitting = replace(kBase, "blocks: [24, 70]}",
                                "blocks: [24, 47]}\n  - {name: u, gpu: a100-80gb, region: lab, blocks: [47, 70]}");
  EXPECT_THAT(error_of(replace(fitting, "region: lab\n    work", "region: moon\n    work")),
              HasSubstr("tiny.yaml:25:13: clients.0.region: no region named 'moon'"));
  EXPECT_THAT(error_of(replace(fitting, "name: t,", "name: s-1,")), HasSubstr("the host name 's-1' is taken"));
}

TEST(Scenario, AModelGivenByItsShapeCostsWhatItsShapeSays) {
  // A make-tiny-model model (the fidelity scenarios' kind): 70 llama blocks of hidden 1024 with
  // grouped-query attention, the same flags make-tiny-model takes.
  const std::string shape =
      "model: {name: tiny-llama, weights: f32, shape: {family: llama, blocks: 70, hidden: 1024, heads: 8, "
      "kv_heads: 4, intermediate: 2816, vocab: 512}}";
  std::string text =
      replace(replace(kBase, "model: {name: bloom-176b, weights: int8}", shape), "{int8: 0.5}", "{f32: 0.5}");
  ScenarioFile file = load_scenario_text(text, "tiny.yaml", {});
  const ModelShape& m = file.base.shape();
  EXPECT_EQ(m.name, "tiny-llama");
  EXPECT_EQ(m.num_blocks, 70);
  // q and o 1024 x 1024, k and v 1024 x 512, three MLP matrices 1024 x 2816, two RMSNorm weights.
  EXPECT_EQ(m.params_per_block(), 2 * 1024 * 1024 + 2 * 1024 * 512 + 3 * 1024 * 2816 + 2 * 1024);
  EXPECT_EQ(m.client_params(), 2 * 512 * 1024);  // untied LM head

  EXPECT_THAT(error_of(replace(text, "vocab: 512}", "vocab: 512, colour: red}")),
              HasSubstr("model.shape.colour: unknown key"));
  EXPECT_THAT(error_of(replace(text, "heads: 8,", "heads: 7,")), HasSubstr("7 heads do not divide hidden 1024"));
  EXPECT_THAT(error_of(replace(text, "family: llama", "family: gpt2")),
              HasSubstr("model.shape.family: 'gpt2' is not one of: llama, bloom"));
  EXPECT_THAT(error_of(replace(text, "family: llama", "family: bloom")),
              HasSubstr("model.shape.kv_heads: bloom has one key/value head per head"));
  EXPECT_THAT(error_of(replace(text, "blocks: 70,", "")), HasSubstr("model.shape: missing required key 'blocks'"));
  // Without a shape the name must still be a published model's.
  EXPECT_THAT(error_of(replace(kBase, "name: bloom-176b", "name: tiny-llama")),
              HasSubstr("model.name: 'tiny-llama' is not one of: bloom-176b"));
}

class ScenarioOverrides : public ::testing::Test {
 protected:
  std::string text_ = replace(kBase, "blocks: [24, 70]}",
                              "blocks: [24, 47]}\n  - {name: u, gpu: a100-80gb, region: lab, blocks: [47, 70]}");
};

TEST_F(ScenarioOverrides, SetReplacesValuesAndNamesItselfInErrors) {
  ScenarioFile file =
      load_scenario_text(text_, "tiny.yaml", {"seed=42", "servers.*.up_bps=1e8", "clients.0.work.batch=4"});
  EXPECT_EQ(file.base.seed, 42u);
  for (const auto& server : file.base.servers) EXPECT_DOUBLE_EQ(*server.link.up_bps, 1e8);
  EXPECT_EQ(file.base.clients[0].work.batch, 4);
  EXPECT_THAT(error_of(text_, {"servers.0.up_bps=-1"}),
              HasSubstr("--set servers.0.up_bps=-1: servers.0.up_bps: must be a finite number in [1,"));
  EXPECT_THAT(error_of(text_, {"servers.0.colour=red"}), HasSubstr("servers.0.colour: unknown key"));
  EXPECT_THAT(error_of(text_, {"servers.9.gpu=t4"}), HasSubstr("'9' is not an index of a list of 3"));
  EXPECT_THAT(error_of(text_, {"seed"}), HasSubstr("expected key.path=value"));
}

TEST_F(ScenarioOverrides, RowsReReadTheFileWithTheirOwnSettings) {
  std::string text = text_ + R"(rows:
  - name: slow
    set: {regions.0.up_bps: 1e8, clients.0.work.new_tokens: 3}
    metric: steps_per_s
    published: 1.5
  - {name: fast, metric: steps_per_s, published: 2}
calibration:
  - {format: int8, row: fast}
)";
  ScenarioFile file = load_scenario_text(text, "tiny.yaml", {"seed=3"});
  ASSERT_EQ(file.row_scenarios.size(), 2u);
  EXPECT_DOUBLE_EQ(file.row_scenarios[0].regions[0].up_bps, 1e8);
  EXPECT_EQ(file.row_scenarios[0].clients[0].work.new_tokens, 3);
  EXPECT_EQ(file.row_scenarios[0].seed, 3u);  // command-line settings apply to every row
  EXPECT_DOUBLE_EQ(file.row_scenarios[1].regions[0].up_bps, 1e9);
  EXPECT_EQ(file.calibration[0].row, "fast");

  EXPECT_THAT(error_of(replace(text, "up_bps: 1e8,", "up_bps: -1e8,")),
              HasSubstr("(row slow): regions.0.up_bps: must be a finite number in [1,"));
  EXPECT_THAT(error_of(replace(text, "row: fast}", "row: quick}")),
              HasSubstr("calibration.0.row: no row named 'quick'"));
}

TEST_F(ScenarioOverrides, RowsMayPredictWithoutAPublishedFigureButNotCalibrateOnOne) {
  std::string text = text_ + R"(rows:
  - {name: guess, metric: total_tokens_per_s}
  - {name: share, metric: failed_session_share, published: 0.5}
)";
  ScenarioFile file = load_scenario_text(text, "tiny.yaml", {});
  EXPECT_FALSE(file.rows[0].published.has_value());
  EXPECT_DOUBLE_EQ(*file.rows[1].published, 0.5);
  EXPECT_THAT(error_of(text + "calibration:\n  - {format: int8, row: guess}\n"),
              HasSubstr("calibration.0.row: row 'guess' has no published figure to calibrate on"));
  EXPECT_THAT(error_of(text + "calibration:\n  - {format: int8, row: share}\n"),
              HasSubstr("row 'share' measures failed_session_share; calibrate on a speed"));
  EXPECT_THAT(error_of(replace(text, "metric: total_tokens_per_s", "metric: joy")),
              HasSubstr("rows.0.metric: 'joy' is not one of"));
}

TEST_F(ScenarioOverrides, ChurnAndOpenEndedWorkAreCheckedLikeEverythingElse) {
  ScenarioFile file = load_scenario_text(text_, "tiny.yaml",
                                         {"churn.mean_lifetime_s=600", "churn.mean_downtime_s=30",
                                          "clients.0.work.repeat=0", "policies.sub_batch_tokens=0"});
  EXPECT_DOUBLE_EQ(file.base.churn.mean_lifetime_s, 600);
  EXPECT_DOUBLE_EQ(file.base.churn.mean_downtime_s, 30);
  EXPECT_EQ(file.base.clients[0].work.repeat, 0);
  EXPECT_EQ(file.base.policies.sub_batch_tokens, 0);
  EXPECT_THAT(error_of(text_, {"churn.mean_lifetime_s=0"}),
              HasSubstr("churn.mean_lifetime_s: must be in [0.001, 1e+09] or .inf, got 0"));
  EXPECT_THAT(error_of(text_, {"clients.0.work.repeat=-1"}),
              HasSubstr("clients.0.work.repeat: must be an integer in [0, 1000000], got -1"));
  EXPECT_THAT(error_of(text_, {"policies.sub_batch_tokens=-5"}), HasSubstr("policies.sub_batch_tokens: must be"));
  EXPECT_THAT(error_of(text_, {"clients.0.work.repeat=0", "clients.0.offload={gpu: a100-80gb, pcie_bps: 1e11}"}),
              HasSubstr("offloading runs a fixed number of sessions"));
}

// What a hostile or mistyped scenario once got through (or hung on): each number now has a range,
// and a value outside it is refused naming the key, before anything runs.
TEST_F(ScenarioOverrides, EveryNumberHasARangeNamedInItsError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"clients.0.work.batch=4294967297", "clients.0.work.batch: must be an integer in [1, 65536], got 4294967297"},
      {"clients.0.work.prefix_tokens=9e15", "clients.0.work.prefix_tokens: must be an integer in [1, 16777216]"},
      {"clients.0.work.new_tokens=-1", "clients.0.work.new_tokens: must be an integer in [0, 16777216], got -1"},
      {"clients.0.work.sequence_tokens=1e12", "clients.0.work.sequence_tokens: must be an integer in [1,"},
      {"regions.0.latency_s=.inf", "regions.0.latency_s: must be a finite number in [0, 60], got .inf"},
      {"regions.0.latency_s=-0.001", "regions.0.latency_s: must be a finite number in [0, 60], got -0.001"},
      {"servers.0.latency_s=1e6", "servers.0.latency_s: must be a finite number in [0, 60]"},
      {"regions.0.down_bps=1e-300", "regions.0.down_bps: must be a finite number in [1, 1e+15], got 1e-300"},
      {"servers.0.up_bps=.inf", "servers.0.up_bps: must be a finite number in [1, 1e+15], got .inf"},
      {"directory.lookup_round_trips=-2", "directory.lookup_round_trips: must be an integer in [0, 100], got -2"},
      {"directory.announce_round_trips=1e9", "directory.announce_round_trips: must be an integer in [0, 100]"},
      {"directory.round_trip_s=-1", "directory.round_trip_s: must be a finite number in [0, 60]"},
      {"directory.update_period_s=0", "directory.update_period_s: must be a finite number in [0.001, 1e+09]"},
      {"duration_s=.inf", "duration_s: must be a finite number in [0.001, 1e+09], got .inf"},
      {"duration_s=1e300", "duration_s: must be a finite number in [0.001, 1e+09], got 1e300"},
      {"seed=-1", "seed: must be an integer in [0,"},
      {"servers.0.count=1e7", "servers.0.count: must be an integer in [1, 100000]"},
      {"servers.0.cache_tokens=-4", "servers.0.cache_tokens: must be an integer in [0, 4294967296], got -4"},
      {"servers.0.compute_slots=0", "servers.0.compute_slots: must be an integer in [1, 1024], got 0"},
      {"servers.0.join_s=.inf", "servers.0.join_s: must be a finite number in [0, 1e+09], got .inf"},
      {"servers.0.blocks=[-1, 24]", "servers.0.blocks.0: must be an integer in [0, 65536], got -1"},
      {"servers.0.load_bps=-1", "servers.0.load_bps: must be a finite number in [0, 1e+15]"},
      {"clients.0.start_s=-5", "clients.0.start_s: must be a finite number in [0, 1e+09], got -5"},
      {"clients.0.offload={gpu: a100-80gb, pcie_bps: 0.5}",
       "clients.0.offload.pcie_bps: must be a finite number in [1,"},
      {"cost.block_overhead_s=.inf", "cost.block_overhead_s: must be a finite number in [0, 60], got .inf"},
      {"cost.kv_bytes_per_value=0", "cost.kv_bytes_per_value: must be a finite number in [0.01, 64], got 0"},
      {"cost.client_efficiency=0", "cost.client_efficiency: must be a finite number in [1e-06, 1], got 0"},
      {"network.tcp_window_bytes=-1", "network.tcp_window_bytes: must be a finite number in [0, 1e+12]"},
      {"churn.mean_downtime_s=.inf", "churn.mean_downtime_s: must be a finite number in [0, 1e+09], got .inf"},
      {"churn.activation_failure_probability=1.5",
       "churn.activation_failure_probability: must be a finite number in [0, 1]"},
      {"policies.balance_period_s=-60", "policies.balance_period_s: must be a finite number in [0.001, 1e+09]"},
      {"policies.recovery_deadline_s=.inf", "policies.recovery_deadline_s: must be a finite number in [0.001, 1e+09]"},
      {"policies.ban_base_s=-1", "policies.ban_base_s: must be a finite number in [0, 1e+09], got -1"},
      {"policies.join_delay_s=.nan", "policies.join_delay_s: expected a number, got '.nan'"},
      {"policies.sub_batch_tokens=1e9", "policies.sub_batch_tokens: must be an integer in [0, 16777216]"},
  };
  for (const auto& [assignment, reason] : cases) {
    EXPECT_THAT(error_of(text_, {assignment}), HasSubstr(reason)) << assignment;
  }
  // A lifetime may be .inf ("never leaves"); a duration may not (the run would never end).
  ScenarioFile file =
      load_scenario_text(text_, "tiny.yaml", {"servers.0.lifetime_s=.inf", "churn.mean_lifetime_s=.inf"});
  EXPECT_EQ(file.base.servers[0].lifetime_s, std::numeric_limits<double>::infinity());
}

TEST(Scenario, AFileThatIsNotYamlNamesItsLine) {
  EXPECT_THAT(error_of("version: 1\nname: [unclosed\n"), HasSubstr("tiny.yaml:"));
  EXPECT_THAT(error_of("version: 1\nname: [unclosed\n"), HasSubstr("not valid YAML"));
  try {
    load_scenario_file("/nonexistent/x.yaml", {});
    FAIL();
  } catch (const ScenarioError& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/x.yaml: cannot read"));
  }
}

}  // namespace
}  // namespace bouquet::sim
