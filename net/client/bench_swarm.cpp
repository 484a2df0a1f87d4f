#include "net/client/bench_swarm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <asio.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/generation.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"
#include "net/client/remote_generation.h"
#include "net/rpc/address.h"
#include "net/server/server_process.h"

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct ModelSpec {
  std::string name;
  gpu::TinyModelConfig config;
};

ModelSpec model_spec(const std::string& name, const fs::path& dir, uint64_t seed) {
  gpu::TinyModelConfig c;
  c.out = dir / name;
  c.seed = seed;
  if (name == "tiny") {
    c.layers = 6;
  } else if (name == "llama-2-7b") {
    // Llama-2-7B's published block shape; three blocks, stored as f16 to halve the file.
    c.layers = 3;
    c.hidden = 4096;
    c.intermediate = 11008;
    c.heads = 32;
    c.kv_heads = 32;
    c.vocab = 32000;
    c.dtype = "f16";
  } else {
    throw std::invalid_argument(fmt::format("--models: '{}' is not tiny or llama-2-7b", name));
  }
  return {name, c};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

// Spans of about equal size, one per server.
std::vector<std::string> split_blocks(int64_t blocks, int64_t servers) {
  std::vector<std::string> spans;
  for (int64_t s = 0; s < servers; ++s) {
    spans.push_back(fmt::format("{}:{}", blocks * s / servers, blocks * (s + 1) / servers));
  }
  return spans;
}

// A bare TCP round trip of 16 KiB each way on loopback, median of 200, for scale.
double loopback_round_trip_ms() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto endpoint = acceptor.local_endpoint();
  constexpr size_t kBytes = 16 * 1024;
  constexpr int kTrips = 200;
  std::thread echo([&] {
    asio::ip::tcp::socket s = acceptor.accept();
    s.set_option(asio::ip::tcp::no_delay(true));
    std::vector<uint8_t> buffer(kBytes);
    for (int i = 0; i < kTrips; ++i) {
      asio::read(s, asio::buffer(buffer));
      asio::write(s, asio::buffer(buffer));
    }
  });
  asio::ip::tcp::socket client(io);
  client.connect(endpoint);
  client.set_option(asio::ip::tcp::no_delay(true));
  std::vector<uint8_t> buffer(kBytes, 7);
  std::vector<double> trips;
  for (int i = 0; i < kTrips; ++i) {
    const auto start = Clock::now();
    asio::write(client, asio::buffer(buffer));
    asio::read(client, asio::buffer(buffer));
    trips.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  echo.join();
  return median(trips);
}

BenchSwarmRow bench_model(const ModelSpec& spec, const BenchSwarmConfig& config) {
  fmt::print(stderr, "bench-swarm: writing {} ({} blocks, hidden {}) to {}\n", spec.name, spec.config.layers,
             spec.config.hidden, spec.config.out.string());
  gpu::write_tiny_checkpoint(spec.config);
  const fs::path model = spec.config.out;
  const int64_t hops = 3;

  std::vector<std::string> args_threads{"--threads", std::to_string(config.threads)};
  std::vector<ServerProcess> servers;
  std::vector<std::string> peers;
  for (const auto& span : split_blocks(spec.config.layers, hops)) {
    std::vector<std::string> args{"--model", model.string(), "--blocks", span, "--listen", "127.0.0.1:0"};
    args.insert(args.end(), args_threads.begin(), args_threads.end());
    servers.emplace_back(current_binary(), args, /*ready_timeout_s=*/600);
    peers.push_back(servers.back().address());
  }
  // Spot checks need a second server for each span (else every check finds none and costs nothing).
  if (!config.spot_check_rate.empty()) {
    for (const auto& span : split_blocks(spec.config.layers, hops)) {
      std::vector<std::string> args{"--model", model.string(), "--blocks", span, "--listen", "127.0.0.1:0"};
      args.insert(args.end(), args_threads.begin(), args_threads.end());
      servers.emplace_back(current_binary(), args, /*ready_timeout_s=*/600);
      peers.push_back(servers.back().address());
    }
  }

  const gpu::ClientHead head({model, "f32", "cpu"});
  gpu::SpanRunner local_blocks({model, 0, -1, "f32", "cpu"});
  SwarmClientConfig client_config;
  client_config.peers = peers;
  client_config.request_timeout_s = 600;
  SwarmClient client(client_config);
  const std::string model_id = model_fingerprint(model);

  gpu::GenerationRequest request;
  core::Rng rng(config.seed);
  for (int64_t i = 0; i < config.prompt_tokens; ++i) {
    request.prompt_ids.push_back(static_cast<gpu::TokenId>(rng.below(spec.config.vocab)));
  }
  request.max_new_tokens = config.new_tokens;
  request.ignore_eos = true;
  RemoteGenerationOptions options;
  options.compression = parse_compression(config.compression);
  options.reply_timeout_s = 600;

  // Every decode step is timed on its own (between consecutive tokens), and the median over all
  // steps of all rounds counts: robust against bursts of load from other processes.
  std::vector<double> local_ms, swarm_ms;
  std::vector<gpu::TokenId> local_ids, swarm_ids;
  std::vector<std::vector<double>> spot_ms(config.spot_check_rate.size());
  std::vector<SpotCheckCost> spot(config.spot_check_rate.size());
  auto step_timer = [](std::vector<double>& out) {
    return [&out, last = std::optional<Clock::time_point>()](gpu::TokenId) mutable {
      const auto now = Clock::now();
      if (last) out.push_back(std::chrono::duration<double, std::milli>(now - *last).count());
      last = now;
    };
  };
  for (int64_t round = 0; round < config.rounds; ++round) {
    gpu::SpanRunner* chain[] = {&local_blocks};
    const size_t local_before = local_ms.size(), swarm_before = swarm_ms.size();
    local_ids = gpu::generate_ids(head, chain, request, step_timer(local_ms)).ids;
    swarm_ids = generate_remote_ids(head, client, model_id, request, options, step_timer(swarm_ms)).result.ids;
    fmt::print(stderr, "bench-swarm: {} round {}: local {:.3f} ms/token, swarm {:.3f} ms/token (medians)\n", spec.name,
               round + 1, median(std::vector<double>(local_ms.begin() + local_before, local_ms.end())),
               median(std::vector<double>(swarm_ms.begin() + swarm_before, swarm_ms.end())));
    for (size_t i = 0; i < spot.size(); ++i) {
      RemoteGenerationOptions checked = options;
      checked.spot_check_rate = config.spot_check_rate[i];
      const size_t before = spot_ms[i].size();
      const auto generation = generate_remote_ids(head, client, model_id, request, checked, step_timer(spot_ms[i]));
      spot[i].checks += static_cast<int64_t>(generation.spot_checks.size());
      spot[i].same_ids = generation.result.ids == local_ids;
      const std::vector<double> steps(spot_ms[i].begin() + before, spot_ms[i].end());
      fmt::print(stderr, "bench-swarm: {} round {}: spot checks at {}: {:.3f} ms/token (mean), {} checks\n", spec.name,
                 round + 1, checked.spot_check_rate, mean(steps), generation.spot_checks.size());
    }
  }
  for (size_t i = 0; i < spot.size(); ++i) {
    spot[i].rate = config.spot_check_rate[i];
    spot[i].ms_per_token = mean(spot_ms[i]);
    spot[i].tokens_per_s = spot[i].ms_per_token > 0 ? 1000 / spot[i].ms_per_token : 0;
  }
  BenchSwarmRow row;
  row.model = spec.name;
  row.blocks = spec.config.layers;
  row.hidden = spec.config.hidden;
  row.hops = hops;
  row.local_ms_per_token = median(local_ms);
  row.swarm_ms_per_token = median(swarm_ms);
  row.ratio = row.swarm_ms_per_token / row.local_ms_per_token;
  row.per_hop_overhead_ms = (row.swarm_ms_per_token - row.local_ms_per_token) / static_cast<double>(hops);
  row.same_ids = local_ids == swarm_ids;
  row.spot_checks = std::move(spot);
  return row;
}

}  // namespace

BenchSwarmResult bench_swarm(const BenchSwarmConfig& config) {
  if (config.new_tokens < 2) throw std::invalid_argument("--new-tokens must be at least 2");
  if (config.prompt_tokens < 1 || config.rounds < 1) {
    throw std::invalid_argument("--prompt-tokens and --rounds must be positive");
  }
  if (config.threads < 1) throw std::invalid_argument("--threads must be at least 1");
  for (double rate : config.spot_check_rate) {
    if (!(rate >= 0 && rate <= 1)) {
      throw std::invalid_argument(fmt::format("--spot-check-rate: {} is not in [0, 1]", rate));
    }
  }
  at::set_num_threads(config.threads);
  parse_compression(config.compression);  // refuse a bad value before writing gigabytes

  const bool temporary = config.dir.empty();
  fs::path dir = config.dir;
  if (temporary) {
    std::string pattern = (fs::temp_directory_path() / "bouquet-bench-swarm-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("cannot make a temporary folder");
    dir = pattern;
  }
  BenchSwarmResult result;
  result.threads = config.threads;
  result.compression = config.compression;
  try {
    result.loopback_round_trip_ms = loopback_round_trip_ms();
    for (const auto& name : split_list(config.models)) {
      result.rows.push_back(bench_model(model_spec(name, dir, config.seed), config));
      if (temporary) fs::remove_all(dir / name);
    }
  } catch (...) {
    if (temporary) fs::remove_all(dir);
    throw;
  }
  if (temporary) fs::remove_all(dir);
  return result;
}

std::string format_bench_swarm(const BenchSwarmResult& r) {
  std::string out = fmt::format(
      "bench-swarm: 3 bouquet serve processes on 127.0.0.1 vs every block in one process; "
      "{} compute thread(s) per process, compression {}\n",
      r.threads, r.compression);
  out += fmt::format("{:<12} {:>6} {:>6} {:>15} {:>15} {:>7} {:>18} {:>9}\n", "model", "blocks", "hidden",
                     "local ms/token", "swarm ms/token", "ratio", "per-hop overhead", "same ids");
  for (const auto& row : r.rows) {
    out += fmt::format("{:<12} {:>6} {:>6} {:>15.3f} {:>15.3f} {:>7.2f} {:>15.3f} ms {:>9}\n", row.model, row.blocks,
                       row.hidden, row.local_ms_per_token, row.swarm_ms_per_token, row.ratio, row.per_hop_overhead_ms,
                       row.same_ids ? "yes" : "NO");
  }
  out += fmt::format("a bare loopback TCP round trip of 16 KiB: {:.3f} ms\n", r.loopback_round_trip_ms);
  bool header = false;
  for (const auto& row : r.rows) {
    for (const auto& s : row.spot_checks) {
      if (!header) {
        out += fmt::format(
            "spot checks (a spare server per span; mean over decode steps):\n{:<12} {:>6} {:>14} {:>9} "
            "{:>7} {:>9}\n",
            "model", "rate", "ms/token", "tokens/s", "checks", "same ids");
        header = true;
      }
      out += fmt::format("{:<12} {:>6.2f} {:>14.3f} {:>9.1f} {:>7} {:>9}\n", row.model, s.rate, s.ms_per_token,
                         s.tokens_per_s, s.checks, s.same_ids ? "yes" : "NO");
    }
  }
  return out;
}

std::string bench_swarm_json(const BenchSwarmResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    rows.push_back({{"model", row.model},
                    {"blocks", row.blocks},
                    {"hidden", row.hidden},
                    {"hops", row.hops},
                    {"local_ms_per_token", row.local_ms_per_token},
                    {"swarm_ms_per_token", row.swarm_ms_per_token},
                    {"ratio", row.ratio},
                    {"per_hop_overhead_ms", row.per_hop_overhead_ms},
                    {"same_ids", row.same_ids}});
    nlohmann::json spot = nlohmann::json::array();
    for (const auto& s : row.spot_checks) {
      spot.push_back({{"rate", s.rate},
                      {"ms_per_token", s.ms_per_token},
                      {"tokens_per_s", s.tokens_per_s},
                      {"checks", s.checks},
                      {"same_ids", s.same_ids}});
    }
    rows.back()["spot_checks"] = spot;
  }
  const nlohmann::json json = {{"threads", r.threads},
                               {"compression", r.compression},
                               {"loopback_round_trip_ms", r.loopback_round_trip_ms},
                               {"rows", rows}};
  return json.dump();
}

}  // namespace bouquet::net
