#include "sim/scenario.h"

#include "core/check.h"
#include "sim/run_result.h"
#include "sim/yaml_fields.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

namespace bouquet::sim {
namespace {

// Ranges of scenario numbers. Each is far wider than any sensible swarm and narrow enough that
// products of them (bytes = batch x tokens x width) neither overflow nor stall the simulation:
// a value outside is a typo or a hostile file, refused by key before anything runs.
constexpr double kMaxTimeS = 1e9;        // ~31 years of simulated time
constexpr double kMaxLatencyS = 60;      // one way; a minute is no network anyone simulates
constexpr double kMinBps = 1;            // a link slower than 1 bit/s never delivers a message
constexpr double kMaxBps = 1e15;         // 1 Pbit/s
constexpr double kMinEfficiency = 1e-6;  // a share of the roofline; 0 would divide by zero
constexpr int64_t kMaxHosts = 100'000;   // per server or client entry (count)
constexpr int64_t kMaxBatch = 65'536;
constexpr int64_t kMaxTokens = 1 << 24;  // positions of one sequence, prefix or sub-batch
constexpr int64_t kMaxBlocks = 65'536;
constexpr int64_t kMaxWidth = int64_t{1} << 24;  // hidden, MLP width, heads, vocabulary of a model shape
constexpr int64_t kMaxCacheTokens = int64_t{1} << 32;
constexpr int64_t kMaxRepeat = 1'000'000;
constexpr int64_t kMaxRoundTrips = 100;

std::string one_of(const YamlValue& value, const std::vector<std::string>& allowed) {
  std::string text = read_string(value);
  if (std::find(allowed.begin(), allowed.end(), text) == allowed.end()) {
    value.fail(fmt::format("'{}' is not one of: {}", text, fmt::join(allowed, ", ")));
  }
  return text;
}

NetworkConfig read_network(const YamlValue& value) {
  NetworkConfig out;
  YamlMap map(value);
  out.model = one_of(map.required("model"), {"CM02", "LV08"});
  if (auto v = map.optional("crosstraffic")) out.crosstraffic = read_bool(*v);
  if (auto v = map.optional("tcp_window_bytes")) out.tcp_window_bytes = read_number_in(*v, 0, 1e12);
  YamlValue why = map.required("why");
  out.why = read_string(why);
  if (out.why.empty()) why.fail("say why this network model fits the scenario");
  map.finish();
  return out;
}

// `shape: {family: llama, blocks: 12, hidden: 1024, heads: 8, kv_heads: 8, intermediate: 2816,
// vocab: 512}`: the keys and families of `make-tiny-model`, whose models it describes. A family sets
// what its blocks hold as gpu/ builds them (llama: gated MLP, RMSNorm, no biases; bloom: 4h MLP,
// LayerNorm, biases, one key/value head per head, tied embeddings).
ModelShape read_model_shape(const YamlValue& value, const std::string& name) {
  ModelShape out;
  YamlMap map(value);
  out.name = name;
  const std::string family = one_of(map.required("family"), {"llama", "bloom"});
  out.num_blocks = read_int_in(map.required("blocks"), 1, kMaxBlocks);
  out.hidden = read_int_in(map.required("hidden"), 1, kMaxWidth);
  YamlValue heads = map.required("heads");
  out.heads = read_int_in(heads, 1, kMaxWidth);
  if (out.hidden % out.heads != 0) heads.fail(fmt::format("{} heads do not divide hidden {}", out.heads, out.hidden));
  const bool bloom = family == "bloom";
  out.kv_heads = out.heads;
  if (auto v = map.optional("kv_heads")) {
    out.kv_heads = read_int_in(*v, 1, out.heads);
    if (bloom && out.kv_heads != out.heads) v->fail("bloom has one key/value head per head");
    if (out.heads % out.kv_heads != 0)
      v->fail(fmt::format("{} key/value heads do not divide {} heads", out.kv_heads, out.heads));
  }
  out.intermediate = 4 * out.hidden;
  if (auto v = map.optional("intermediate")) {
    out.intermediate = read_int_in(*v, 1, kMaxWidth);
    if (bloom && out.intermediate != 4 * out.hidden) v->fail("bloom's MLP is always 4 x hidden");
  }
  out.vocab = read_int_in(map.required("vocab"), 1, kMaxWidth);
  out.gated_mlp = !bloom;
  out.linear_bias = bloom;
  out.layer_norm = bloom;
  out.tied_embeddings = bloom;
  if (auto v = map.optional("tie_embeddings")) {
    out.tied_embeddings = read_bool(*v);
    if (bloom && !out.tied_embeddings) v->fail("bloom always ties its LM head to the embeddings");
  }
  map.finish();
  return out;
}

ModelConfig read_model(const YamlValue& value) {
  ModelConfig out;
  YamlMap map(value);
  if (auto shape = map.optional("shape")) {
    out.name = "custom";
    if (auto name = map.optional("name")) out.name = read_string(*name);
    out.shape = read_model_shape(*shape, out.name);
  } else {
    out.name = one_of(map.required("name"), model_names());
  }
  out.weights = one_of(map.required("weights"), {"f32", "f16", "int8", "nf4"});
  if (auto v = map.optional("activations")) {
    out.activations = one_of(*v, {"float32", "float16", "bfloat16"});
  }
  if (auto v = map.optional("wire_compression")) {
    out.wire_compression = one_of(*v, {"none", "float16", "int8_blockwise"});
  }
  map.finish();
  return out;
}

// A share of the roofline.
double read_efficiency(const YamlValue& value) { return read_number_in(value, kMinEfficiency, 1); }

// The cost section: the client's figures, and over the profile's figures any the scenario sets
// itself (`int8: {memory_eff: 0.5}`, `failure: {detection_s: 1}`). Without a profile the older
// keys give them all: `efficiency` (both shares of a format), block and request overheads (every
// format).
void read_cost(const YamlValue& value, Scenario& s) {
  CostModelConfig& out = s.cost;
  const bool profiled = !s.profile.empty();
  YamlMap map(value);
  if (auto v = map.optional("efficiency")) {
    YamlMap formats(*v);
    for (WeightFormat format : kWeightFormats) {
      if (auto e = formats.optional(format_name(format))) {
        out.of(format).compute_eff = out.of(format).memory_eff = read_efficiency(*e);
        s.cost_given.insert(fmt::format("{}.compute_eff", format_name(format)));
        s.cost_given.insert(fmt::format("{}.memory_eff", format_name(format)));
      }
    }
    formats.finish();
  }
  auto block = profiled ? map.optional("block_overhead_s") : map.required("block_overhead_s");
  auto request = profiled ? map.optional("request_overhead_s") : map.required("request_overhead_s");
  for (WeightFormat format : kWeightFormats) {
    if (block) {
      out.of(format).block_overhead_s = read_number_in(*block, 0, kMaxLatencyS);
      s.cost_given.insert(fmt::format("{}.block_overhead_s", format_name(format)));
    }
    if (request) {
      out.of(format).request_overhead_s = read_number_in(*request, 0, kMaxLatencyS);
      s.cost_given.insert(fmt::format("{}.request_overhead_s", format_name(format)));
    }
  }
  for (WeightFormat format : kWeightFormats) {
    auto f = map.optional(format_name(format));
    if (!f) continue;
    YamlMap params(*f);
    for (const char* name : kFormatParameters) {
      auto p = params.optional(name);
      if (!p) continue;
      const bool share = std::string_view(name).ends_with("_eff");
      const std::string key = fmt::format("{}.{}", format_name(format), name);
      set_parameter(key, share ? read_efficiency(*p) : read_number_in(*p, 0, kMaxLatencyS), out, s.failure);
      s.cost_given.insert(key);
    }
    params.finish();
  }
  if (auto c = map.optional("client")) {
    YamlMap client(*c);
    for (const char* name : kClientParameters) {
      if (auto p = client.optional(name)) {
        const std::string key = fmt::format("client.{}", name);
        set_parameter(key, read_number_in(*p, 0, 1e13), out, s.failure);
        s.cost_given.insert(key);
      }
    }
    client.finish();
  }
  if (auto f = map.optional("failure")) {
    YamlMap failure(*f);
    for (const char* name : kFailureParameters) {
      if (auto p = failure.optional(name)) {
        const std::string key = fmt::format("failure.{}", name);
        set_parameter(key, read_number_in(*p, 0, kMaxTimeS), out, s.failure);
        s.cost_given.insert(key);
      }
    }
    failure.finish();
  }
  out.client_efficiency = read_efficiency(map.required("client_efficiency"));
  if (auto v = map.optional("client_bytes_per_param")) out.client_bytes_per_param = read_number_in(*v, 0.01, 64);
  if (auto v = map.optional("kv_bytes_per_value")) out.kv_bytes_per_value = read_number_in(*v, 0.01, 64);
  if (auto v = map.optional("activation_bytes_per_value")) {
    out.activation_bytes_per_value = read_number_in(*v, 0.01, 64);
  }
  map.finish();
}

RegionConfig read_region(const YamlValue& value) {
  RegionConfig out;
  YamlMap map(value);
  out.name = read_string(map.required("name"));
  out.up_bps = read_number_in(map.required("up_bps"), kMinBps, kMaxBps);
  out.down_bps = read_number_in(map.required("down_bps"), kMinBps, kMaxBps);
  out.latency_s = read_number_in(map.required("latency_s"), 0, kMaxLatencyS);
  map.finish();
  return out;
}

LongHaulConfig read_long_haul(const YamlValue& value) {
  LongHaulConfig out;
  YamlMap map(value);
  out.from = read_string(map.required("from"));
  out.to = read_string(map.required("to"));
  out.bandwidth_bps = read_number_in(map.required("bandwidth_bps"), kMinBps, kMaxBps);
  out.latency_s = read_number_in(map.required("latency_s"), 0, kMaxLatencyS);
  map.finish();
  return out;
}

RelayConfig read_relay(const YamlValue& value) {
  RelayConfig out;
  YamlMap map(value);
  out.name = read_string(map.required("name"));
  out.region = read_string(map.required("region"));
  out.bandwidth_bps = read_number_in(map.required("bandwidth_bps"), kMinBps, kMaxBps);
  out.latency_s = read_number_in(map.required("latency_s"), 0, kMaxLatencyS);
  map.finish();
  return out;
}

// The link keys shared by servers and clients, read from the host's own mapping.
HostLinkConfig read_host_link(YamlMap& map) {
  HostLinkConfig out;
  out.region = read_string(map.required("region"));
  if (auto v = map.optional("up_bps")) out.up_bps = read_number_in(*v, kMinBps, kMaxBps);
  if (auto v = map.optional("down_bps")) out.down_bps = read_number_in(*v, kMinBps, kMaxBps);
  if (auto v = map.optional("latency_s")) out.latency_s = read_number_in(*v, 0, kMaxLatencyS);
  if (auto v = map.optional("relay")) out.relay = read_string(*v);
  return out;
}

// A device given as `device_file: PATH` (relative to the scenario's folder) instead of by name:
// read and registered now, so a bad file fails here naming the key. Returns its device name.
std::optional<std::string> read_device_file_key(YamlMap& map, std::string_view name_key) {
  auto file = map.optional("device_file");
  if (!file) return std::nullopt;
  if (map.has(name_key)) file->fail(fmt::format("give either {} or device_file, not both", name_key));
  std::filesystem::path path = read_string(*file);
  if (path.is_relative() && file->source && !file->source->file.empty()) {
    path = std::filesystem::path(file->source->file).parent_path() / path;
  }
  try {
    return register_device_file(path.string());
  } catch (const DeviceFileError& e) {
    file->fail(e.what());
  }
}

ServerConfig read_server(const YamlValue& value, std::vector<YamlValue>& span_values) {
  ServerConfig out;
  YamlMap map(value);
  out.name = read_string(map.required("name"));
  if (auto v = map.optional("count")) out.count = read_int_in(*v, 1, kMaxHosts);
  if (auto file = read_device_file_key(map, "gpu")) {
    out.gpu = *file;
  } else {
    out.gpu = read_string(map.required("gpu"));
    if (!find_device(out.gpu) || !find_device(out.gpu)->is_gpu) {
      map.required("gpu").fail(fmt::format("unknown GPU '{}' (known: {})", out.gpu, fmt::join(device_names(), ", ")));
    }
  }
  out.link = read_host_link(map);
  YamlValue blocks = map.required("blocks");
  if (blocks.node.IsScalar() && blocks.node.Scalar() == "auto") {
    out.blocks.reset();
  } else {
    std::vector<YamlValue> pair = read_list(blocks);
    if (pair.size() != 2) blocks.fail("expected [begin, end) as two block indices, or auto");
    out.blocks = BlockRange{read_int_in(pair[0], 0, kMaxBlocks), read_int_in(pair[1], 0, kMaxBlocks)};
  }
  span_values.push_back(blocks);
  if (auto v = map.optional("num_blocks")) {
    out.num_blocks = read_int_in(*v, 1, kMaxBlocks);
    if (out.blocks) v->fail("num_blocks is for automatic placement; this server's blocks are given");
  }
  if (auto v = map.optional("cache_tokens")) out.cache_tokens = read_int_in(*v, 0, kMaxCacheTokens);
  if (auto v = map.optional("compute_slots")) out.compute_slots = read_int_in(*v, 1, 1024);
  if (auto v = map.optional("max_batch")) out.max_batch = read_int_in(*v, 1, 4096);
  if (auto v = map.optional("batch_wait_ms")) out.batch_wait_ms = read_number_in(*v, 0, 1e4);
  if (auto v = map.optional("prefill_chunk")) out.prefill_chunk = read_int_in(*v, -1, 1 << 20);
  if (auto v = map.optional("join_s")) out.join_s = read_number_in(*v, 0, kMaxTimeS);
  if (auto v = map.optional("lifetime_s")) out.lifetime_s = read_number_in(*v, 1e-3, kMaxTimeS, Infinity::allowed);
  if (auto v = map.optional("crash_after_steps")) out.crash_after_steps = read_int_in(*v, 0, kMaxTokens);
  if (auto v = map.optional("load_bps")) out.load_bps = read_number_in(*v, 0, kMaxBps);
  // How much faster than it is a server claims to be (a liar drill); 1 = honest.
  if (auto v = map.optional("announce_speed_x")) out.announce_speed_x = read_number_in(*v, 1e-6, 1e6);
  if (auto v = map.optional("inference_rps")) out.inference_rps = read_number_in(*v, 0, 1e9);
  if (auto v = map.optional("throughput_rps")) out.throughput_rps = read_number_in(*v, 0, 1e9);
  map.finish();
  return out;
}

WorkConfig read_work(const YamlValue& value) {
  WorkConfig out;
  YamlMap map(value);
  out.kind = one_of(map.required("kind"), {"generate", "forward", "backward"});
  if (auto v = map.optional("batch")) out.batch = read_int_in(*v, 1, kMaxBatch);
  if (auto v = map.optional("prefix_tokens")) out.prefix_tokens = read_int_in(*v, 1, kMaxTokens);
  if (auto v = map.optional("new_tokens")) out.new_tokens = read_int_in(*v, 0, kMaxTokens);
  if (auto v = map.optional("sequence_tokens")) out.sequence_tokens = read_int_in(*v, 1, kMaxTokens);
  // Sessions or passes, one after another; 0 for "until the run ends".
  if (auto v = map.optional("repeat")) out.repeat = read_int_in(*v, 0, kMaxRepeat);
  map.finish();
  return out;
}

ClientConfig read_client(const YamlValue& value) {
  ClientConfig out;
  YamlMap map(value);
  out.name = read_string(map.required("name"));
  if (auto v = map.optional("count")) out.count = read_int_in(*v, 1, kMaxHosts);
  if (auto file = read_device_file_key(map, "device")) {
    out.device = *file;
  } else {
    YamlValue device = map.required("device");
    out.device = read_string(device);
    if (!find_device(out.device)) {
      device.fail(fmt::format("unknown device '{}' (known: {})", out.device, fmt::join(device_names(), ", ")));
    }
  }
  out.link = read_host_link(map);
  out.work = read_work(map.required("work"));
  if (auto v = map.optional("offload")) {
    YamlMap offload(*v);
    OffloadConfig config;
    YamlValue gpu = offload.required("gpu");
    config.gpu = read_string(gpu);
    if (!find_device(config.gpu) || !find_device(config.gpu)->is_gpu) {
      gpu.fail(fmt::format("unknown GPU '{}' (known: {})", config.gpu, fmt::join(device_names(), ", ")));
    }
    config.pcie_bps = read_number_in(offload.required("pcie_bps"), kMinBps, kMaxBps);
    offload.finish();
    out.offload = config;
  }
  if (auto v = map.optional("start_s")) out.start_s = read_number_in(*v, 0, kMaxTimeS);
  map.finish();
  return out;
}

template <class T, class Read>
std::vector<T> read_items(YamlMap& map, std::string_view key, Read read) {
  std::vector<T> out;
  if (auto v = map.optional(key)) {
    for (const auto& item : read_list(*v)) out.push_back(read(item));
  }
  return out;
}

RowConfig read_row(const YamlValue& value) {
  RowConfig out;
  YamlMap map(value);
  out.name = read_string(map.required("name"));
  if (auto v = map.optional("set")) out.set = read_string_map(*v);
  out.metric = one_of(map.required("metric"), metric_names());
  if (auto v = map.optional("published")) {
    if (v->node.IsScalar() && v->node.Scalar() == "did not finish") {
      out.published_did_not_finish = true;
    } else {
      out.published = read_number_in(*v, 1e-12, 1e18);
    }
  }
  if (auto v = map.optional("source")) out.source = read_string(*v);
  if (auto v = map.optional("quality")) out.quality = one_of(*v, {"primary", "secondary", "recalled"});
  map.finish();
  return out;
}

// Everything read from one YAML tree, with the nodes needed to place cross-reference errors.
struct Parsed {
  std::shared_ptr<YamlSource> source;  // the values below point into it
  Scenario scenario;
  std::vector<RowConfig> rows;
  std::vector<CalibrationConfig> calibration;
  std::vector<YamlValue> server_values, client_values, span_values, row_values, calibration_values;
  std::optional<YamlValue> cost_value, profile_value;
};

Parsed parse(const YamlValue& root) {
  Parsed p;
  Scenario& s = p.scenario;
  YamlMap map(root);
  YamlValue version = map.required("version");
  s.version = read_int(version);
  if (s.version != 1) version.fail(fmt::format("this build reads scenario version 1, not {}", s.version));
  s.name = read_string(map.required("name"));
  if (auto v = map.optional("description")) s.description = read_string(*v);
  s.seed = static_cast<uint64_t>(read_int_in(map.required("seed"), 0, int64_t{9'000'000'000'000'000}));
  // A run ends when its time does: .inf would never end.
  s.duration_s = read_number_in(map.required("duration_s"), 1e-3, kMaxTimeS);
  s.network = read_network(map.required("network"));
  s.model = read_model(map.required("model"));
  if (auto v = map.optional("profile")) {
    p.profile_value = v;
    s.profile = read_string(*v);
    const bool plain = std::all_of(s.profile.begin(), s.profile.end(), [](unsigned char c) {
      return std::islower(c) || std::isdigit(c) || c == '-' || c == '_';
    });
    if (s.profile.empty() || s.profile.size() > 64 || !plain) {
      v->fail(fmt::format(
          "'{}' is not a profile name (profiles/NAME.yaml beside the scenario; NAME of a-z, 0-9, - and _)", s.profile));
    }
  }
  p.cost_value = map.required("cost");
  read_cost(*p.cost_value, s);
  s.regions = read_items<RegionConfig>(map, "regions", read_region);
  s.long_haul = read_items<LongHaulConfig>(map, "long_haul", read_long_haul);
  s.relays = read_items<RelayConfig>(map, "relays", read_relay);
  if (auto v = map.optional("servers")) {
    for (const auto& item : read_list(*v)) {
      p.server_values.push_back(item);
      s.servers.push_back(read_server(item, p.span_values));
    }
  }
  for (const auto& item : read_list(map.required("clients"))) {
    p.client_values.push_back(item);
    s.clients.push_back(read_client(item));
  }
  if (auto v = map.optional("churn")) {
    YamlMap churn(*v);
    if (auto f = churn.optional("activation_failure_probability")) {
      s.churn.activation_failure_probability = read_probability(*f);
    }
    if (auto l = churn.optional("mean_lifetime_s")) {
      s.churn.mean_lifetime_s = read_number_in(*l, 1e-3, kMaxTimeS, Infinity::allowed);
    }
    if (auto d = churn.optional("mean_downtime_s")) s.churn.mean_downtime_s = read_number_in(*d, 0, kMaxTimeS);
    churn.finish();
  }
  if (auto v = map.optional("policies")) {
    YamlMap policies(*v);
    if (auto r = policies.optional("routing")) {
      const std::string name = read_string(*r);
      const auto routing = core::parse_routing(name);
      if (!routing) r->fail(fmt::format("'{}' is not one of: {}", name, core::routing_names()));
      s.policies.routing = *routing;
    }
    if (auto l = policies.optional("load_aware_routing")) s.policies.load_aware_routing = read_bool(*l);
    if (auto m = policies.optional("max_batch")) s.policies.max_batch = read_int_in(*m, 1, 4096);
    if (auto w = policies.optional("batch_wait_ms")) s.policies.batch_wait_ms = read_number_in(*w, 0, 1e4);
    if (auto c = policies.optional("prefill_chunk")) s.policies.prefill_chunk = read_int_in(*c, -1, 1 << 20);
    if (auto b = policies.optional("balancing")) s.policies.balancing = one_of(*b, {"none", "rebalance"});
    if (auto p = policies.optional("placement")) s.policies.placement = one_of(*p, {"greedy", "random", "best"});
    if (auto q = policies.optional("balance_quality")) s.policies.balance_quality = read_probability(*q);
    if (auto p = policies.optional("balance_period_s"))
      s.policies.balance_period_s = read_number_in(*p, 1e-3, kMaxTimeS);
    if (auto j = policies.optional("join_delay_s")) s.policies.join_delay_s = read_number_in(*j, 0, kMaxTimeS);
    if (auto r = policies.optional("recovery")) {
      s.policies.recovery = one_of(*r, {"replay", "restart", "restart_from_scratch", "cacheless", "none"});
    }
    if (auto d = policies.optional("recovery_deadline_s")) {
      s.policies.recovery_deadline_s = read_number_in(*d, 1e-3, kMaxTimeS);
    }
    if (auto b = policies.optional("ban_base_s")) s.policies.ban_base_s = read_number_in(*b, 0, kMaxTimeS);
    if (auto r = policies.optional("spot_check_rate")) s.policies.spot_check_rate = read_probability(*r);
    // Positions per sub-batch, or 0 for no split.
    if (auto t = policies.optional("sub_batch_tokens")) s.policies.sub_batch_tokens = read_int_in(*t, 0, kMaxTokens);
    policies.finish();
  }
  if (auto v = map.optional("directory")) {
    YamlMap dir(*v);
    if (auto x = dir.optional("round_trip_s")) s.directory.round_trip_s = read_number_in(*x, 0, kMaxLatencyS);
    if (auto x = dir.optional("lookup_round_trips")) {
      s.directory.lookup_round_trips = read_int_in(*x, 0, kMaxRoundTrips);
    }
    if (auto x = dir.optional("announce_round_trips")) {
      s.directory.announce_round_trips = read_int_in(*x, 0, kMaxRoundTrips);
    }
    if (auto x = dir.optional("update_period_s")) s.directory.update_period_s = read_number_in(*x, 1e-3, kMaxTimeS);
    dir.finish();
  }
  if (auto v = map.optional("rows")) {
    for (const auto& item : read_list(*v)) {
      p.row_values.push_back(item);
      p.rows.push_back(read_row(item));
    }
  }
  if (auto v = map.optional("calibration")) {
    for (const auto& item : read_list(*v)) {
      YamlMap entry(item);
      CalibrationConfig c;
      c.format = one_of(entry.required("format"), {"f32", "f16", "int8", "nf4"});
      c.row = read_string(entry.required("row"));
      entry.finish();
      p.calibration_values.push_back(item);
      p.calibration.push_back(c);
    }
  }
  map.finish();
  return p;
}

template <class T>
const T* find_named(const std::vector<T>& items, const std::string& name) {
  for (const auto& item : items) {
    if (item.name == name) return &item;
  }
  return nullptr;
}

void check_link(const Scenario& s, const HostLinkConfig& link, const YamlValue& host) {
  YamlMap map(host);
  if (!find_named(s.regions, link.region)) {
    map.required("region").fail(fmt::format("no region named '{}' in regions", link.region));
  }
  if (!link.relay.empty()) {
    const RelayConfig* relay = find_named(s.relays, link.relay);
    if (!relay) map.required("relay").fail(fmt::format("no relay named '{}' in relays", link.relay));
    if (relay->region != link.region) {
      map.required("relay").fail(
          fmt::format("relay '{}' is in region '{}', the host in '{}'", relay->name, relay->region, link.region));
    }
  }
}

// Cross-references and physical limits: what a single value cannot tell.
void check(const Parsed& p, const YamlValue& root) {
  const Scenario& s = p.scenario;
  const ModelShape& shape = s.shape();
  std::set<std::string> regions, hosts;
  for (const auto& region : s.regions) {
    if (!regions.insert(region.name).second) {
      root.fail(fmt::format("regions: the name '{}' appears twice", region.name));
    }
  }
  for (const auto& haul : s.long_haul) {
    if (!regions.count(haul.from) || !regions.count(haul.to) || haul.from == haul.to) {
      root.fail(fmt::format("long_haul {} -> {}: needs two different regions of regions", haul.from, haul.to));
    }
  }
  for (const auto& relay : s.relays) {
    if (!regions.count(relay.region)) {
      root.fail(fmt::format("relays: '{}' is in unknown region '{}'", relay.name, relay.region));
    }
  }
  const CostModel cost(s.cost);
  std::vector<int> covered(static_cast<size_t>(shape.num_blocks), 0);
  bool any_auto = false;  // servers placed by the balancer may cover anything
  for (size_t i = 0; i < s.servers.size(); ++i) {
    const ServerConfig& server = s.servers[i];
    const YamlValue& value = p.server_values[i];
    check_link(s, server.link, value);
    for (const auto& name : instance_names(server.name, server.count)) {
      if (!hosts.insert(name).second) value.fail(fmt::format("the host name '{}' is taken", name));
    }
    const YamlValue& span = p.span_values[i];
    const DeviceSpec& gpu = *find_device(server.gpu);
    if (gpu.measured && !measured_figures(gpu, s.weight_format())) {
      YamlMap(value)
          .required("device_file")
          .fail(fmt::format("{} has no figures for {} weights", gpu.measured->file, format_name(s.weight_format())));
    }
    if (!server.blocks) {
      any_auto = true;
      const double weights = static_cast<double>(server.num_blocks) * cost.block_weight_bytes(shape, s.weight_format());
      if (server.num_blocks > shape.num_blocks || weights > gpu.memory_bytes) {
        YamlMap(value)
            .required("num_blocks")
            .fail(fmt::format("{} blocks of {} do not fit: the model has {}, the {} holds {:.1f} GB", server.num_blocks,
                              shape.name, shape.num_blocks, gpu.name, gpu.memory_bytes / 1e9));
      }
      continue;
    }
    const BlockRange& b = *server.blocks;
    if (b.begin < 0 || b.end > shape.num_blocks || b.begin >= b.end) {
      span.fail(
          fmt::format("[{}, {}) is not a span of {}'s blocks [0, {})", b.begin, b.end, shape.name, shape.num_blocks));
    }
    const double weights = static_cast<double>(b.end - b.begin) * cost.block_weight_bytes(shape, s.weight_format());
    if (weights > gpu.memory_bytes) {
      span.fail(fmt::format("{} blocks of {} in {} take {:.1f} GB, more than the {}'s {:.1f} GB", b.end - b.begin,
                            shape.name, s.model.weights, weights / 1e9, gpu.name, gpu.memory_bytes / 1e9));
    }
    for (int64_t block = b.begin; block < b.end; ++block) covered[static_cast<size_t>(block)] = 1;
  }
  bool needs_swarm = false;
  for (size_t i = 0; i < s.clients.size(); ++i) {
    const ClientConfig& client = s.clients[i];
    check_link(s, client.link, p.client_values[i]);
    for (const auto& name : instance_names(client.name, client.count)) {
      if (!hosts.insert(name).second) p.client_values[i].fail(fmt::format("the host name '{}' is taken", name));
    }
    if (!client.offload) needs_swarm = true;
    if (client.offload && client.work.repeat == 0) {
      YamlMap(p.client_values[i])
          .required("work")
          .fail("offloading runs a fixed number of sessions: repeat must be >= 1");
    }
    if (client.work.kind != "generate" && client.work.new_tokens != 0) {
      YamlMap(p.client_values[i]).required("work").fail("new_tokens only applies to generate");
    }
  }
  if (needs_swarm && !any_auto) {
    auto gap = std::find(covered.begin(), covered.end(), 0);
    if (gap != covered.end()) {
      root.fail(fmt::format("no server ever holds block {} of {}: a client could never finish", gap - covered.begin(),
                            shape.name));
    }
  }
  // Every pair of regions with hosts must be joined by a long-haul link.
  std::set<std::string> used;
  for (const auto& server : s.servers) used.insert(server.link.region);
  for (const auto& client : s.clients) used.insert(client.link.region);
  for (const auto& a : used) {
    for (const auto& b : used) {
      if (a >= b) continue;
      bool joined = std::any_of(s.long_haul.begin(), s.long_haul.end(), [&](const auto& h) {
        return (h.from == a && h.to == b) || (h.from == b && h.to == a);
      });
      if (!joined) root.fail(fmt::format("regions '{}' and '{}' have hosts but no long_haul link", a, b));
    }
  }
}

YAML::Node load_yaml(const std::string& text, const std::string& name) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ScenarioError(fmt::format("{}:{}:{}: not valid YAML: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

// Parses `text` with the overrides applied, then checks the result.
Parsed parse_with(const std::string& text, const std::string& name, const std::vector<std::string>& overrides,
                  const std::vector<std::pair<std::string, std::string>>& row_set, const std::string& row_name) {
  auto source = std::make_shared<YamlSource>(YamlSource{name, {}});
  YAML::Node root = load_yaml(text, name);
  for (const auto& assignment : overrides) apply_override(root, assignment, *source);
  for (const auto& [key, value] : row_set) {
    const size_t before = source->overridden.size();
    apply_override(root, key + "=" + value, *source);
    // Name the row rather than the command line in errors.
    for (size_t i = before; i < source->overridden.size(); ++i) {
      source->overridden[i].second = fmt::format("{}={} (row {})", key, value, row_name);
    }
  }
  YamlValue top{root, "", source.get()};
  Parsed parsed = parse(top);
  parsed.source = source;
  check(parsed, top);
  return parsed;
}

// The profile a parsed scenario names, read from profiles/NAME.yaml beside the scenario file.
Profile open_profile(const Parsed& parsed, const std::string& scenario_path) {
  const std::string path = profile_path(scenario_path, parsed.scenario.profile);
  if (!std::filesystem::exists(path)) {
    parsed.profile_value->fail(fmt::format("no profile '{}': {} does not exist", parsed.scenario.profile, path));
  }
  return load_profile(path);
}

// Fills what the scenario does not set itself from its profile, and refuses a scenario that needs
// a figure neither gives: at the profile's line, naming the key.
void complete_with_profile(Scenario& s, const Profile& profile, const std::string& who) {
  for (const auto& p : profile.parameters) {
    apply_profile_value(s, p.key, p.value);
    for (const auto& alias : p.aliases) apply_profile_value(s, alias, p.value);
  }
  const std::string format = s.model.weights;
  auto line_of = [&](const std::string& section) {
    auto it = profile.lines.find(section);
    if (it == profile.lines.end()) it = profile.lines.find("formats");
    return it == profile.lines.end() ? 1 : it->second;
  };
  // Measured devices (device files) bring their own step times: only datasheet devices need the
  // profile's shares and overheads.
  bool datasheet = std::any_of(s.clients.begin(), s.clients.end(), [](const ClientConfig& c) { return c.offload; });
  for (const auto& server : s.servers) {
    const DeviceSpec* device = find_device(server.gpu);
    datasheet |= device == nullptr || !device->measured;
  }
  for (const char* name : kFormatParameters) {
    const std::string key = fmt::format("{}.{}", format, name);
    if (!datasheet || s.cost_given.count(key) || profile.find(key)) continue;
    throw ScenarioError(fmt::format("{}:{}: formats.{}.{}: missing, and {} of {} runs {} weights", profile.path,
                                    line_of("formats." + format), format, name, who, s.name, format));
  }
  const bool fails = s.churn.activation_failure_probability > 0 || std::isfinite(s.churn.mean_lifetime_s);
  if (!fails) return;
  for (const char* name : kFailureParameters) {
    const std::string key = fmt::format("failure.{}", name);
    if (s.cost_given.count(key) || profile.find(key)) continue;
    const auto it = profile.lines.find("failure");
    throw ScenarioError(fmt::format("{}:{}: failure.{}: missing, and {} of {} has servers fail", profile.path,
                                    it == profile.lines.end() ? 1 : it->second, name, who, s.name));
  }
}

}  // namespace

const ModelShape& Scenario::shape() const {
  if (model.shape) return *model.shape;
  const ModelShape* found = find_model(model.name);
  BOUQUET_CHECK(found != nullptr, "scenario model checked by the loader");
  return *found;
}

WeightFormat Scenario::weight_format() const {
  auto format = parse_weight_format(model.weights);
  BOUQUET_CHECK(format.has_value(), "weight format checked by the loader");
  return *format;
}

void apply_profile_value(Scenario& scenario, const std::string& key, double value) {
  if (!scenario.cost_given.count(key)) set_parameter(key, value, scenario.cost, scenario.failure);
}

std::vector<std::string> instance_names(const std::string& name, int64_t count) {
  if (count == 1) return {name};
  std::vector<std::string> names;
  for (int64_t i = 0; i < count; ++i) names.push_back(fmt::format("{}-{}", name, i));
  return names;
}

ScenarioFile load_scenario_text(const std::string& text, const std::string& name,
                                const std::vector<std::string>& overrides) {
  Parsed base = parse_with(text, name, overrides, {}, "");
  ScenarioFile file;
  file.path = name;
  file.stem = std::filesystem::path(name).stem().string();
  if (!base.scenario.profile.empty()) {
    file.profile = open_profile(base, name);
    complete_with_profile(base.scenario, *file.profile, "its base");
  }
  file.overrides = overrides;
  file.base = base.scenario;
  file.rows = base.rows;
  file.calibration = base.calibration;

  std::set<std::string> row_names;
  for (size_t i = 0; i < base.rows.size(); ++i) {
    if (!row_names.insert(base.rows[i].name).second) {
      YamlMap(base.row_values[i]).required("name").fail("another row has this name");
    }
  }
  std::set<std::string> calibrated;
  for (size_t i = 0; i < base.calibration.size(); ++i) {
    const CalibrationConfig& c = base.calibration[i];
    YamlMap entry(base.calibration_values[i]);
    if (!row_names.count(c.row)) entry.required("row").fail(fmt::format("no row named '{}'", c.row));
    for (const auto& row : base.rows) {
      if (row.name != c.row) continue;
      if (!row.published)
        entry.required("row").fail(fmt::format("row '{}' has no published figure to calibrate on", c.row));
      if (row.metric != "steps_per_s" && row.metric != "tokens_per_s") {
        entry.required("row").fail(fmt::format("row '{}' measures {}; calibrate on a speed", c.row, row.metric));
      }
    }
    if (!calibrated.insert(c.format).second) {
      entry.required("format").fail("one efficiency per weight format may be calibrated, on one row");
    }
  }
  for (const auto& row : base.rows) {
    Parsed parsed = parse_with(text, name, overrides, row.set, row.name);
    if (file.profile && parsed.scenario.profile == file.base.profile) {
      complete_with_profile(parsed.scenario, *file.profile, "row " + row.name);
    } else if (!parsed.scenario.profile.empty()) {
      complete_with_profile(parsed.scenario, open_profile(parsed, name), "row " + row.name);
    }
    const std::string& format = parsed.scenario.model.weights;
    if (parsed.scenario.profile.empty() && !parsed.scenario.cost_given.count(format + ".compute_eff") &&
        !calibrated.count(format)) {
      parsed.cost_value->fail(fmt::format(
          "row {}: no efficiency for {} weights: give cost.efficiency.{} or calibrate it", row.name, format, format));
    }
    file.row_scenarios.push_back(parsed.scenario);
  }
  if (base.rows.empty()) {
    const std::string& format = base.scenario.model.weights;
    if (base.scenario.profile.empty() && !base.scenario.cost_given.count(format + ".compute_eff")) {
      base.cost_value->fail(fmt::format("no efficiency for {} weights: give cost.efficiency.{}", format, format));
    }
  }
  return file;
}

ScenarioFile load_scenario_file(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) throw ScenarioError(fmt::format("{}: cannot read the scenario file", path));
  std::stringstream text;
  text << in.rdbuf();
  return load_scenario_text(text.str(), path, overrides);
}

}  // namespace bouquet::sim
