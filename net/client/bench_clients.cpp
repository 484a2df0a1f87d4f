#include "net/client/bench_clients.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/fingerprint.h"
#include "gpu/generation.h"
#include "gpu/tiny_model.h"
#include "net/client/remote_generation.h"
#include "net/server/server_process.h"

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

// One generation of `prompt_tokens` random tokens and `new_tokens` new ones through the servers;
// on_token sees each id as it comes.
gpu::GenerationResult generate(const gpu::ClientHead& head, const std::vector<std::string>& peers,
                               const std::string& model_id, uint64_t seed, int64_t prompt_tokens, int64_t new_tokens,
                               int64_t vocab, const std::function<void(gpu::TokenId)>& on_token) {
  SwarmClientConfig client_config;
  client_config.peers = peers;
  client_config.request_timeout_s = 600;
  SwarmClient client(client_config);
  gpu::GenerationRequest request;
  core::Rng rng(seed);
  for (int64_t i = 0; i < prompt_tokens; ++i) {
    request.prompt_ids.push_back(static_cast<gpu::TokenId>(rng.below(static_cast<uint64_t>(vocab))));
  }
  request.max_new_tokens = new_tokens;
  request.ignore_eos = true;
  RemoteGenerationOptions options;
  options.reply_timeout_s = 600;
  return generate_remote_ids(head, client, model_id, request, options, on_token).result;
}

// One row: `clients` generations at once through the running servers; with long_prompt_tokens,
// one more client sends a prompt that long once every other client has begun decoding.
BenchClientsRow run_clients(const BenchClientsConfig& config, const gpu::ClientHead& head,
                            const std::vector<std::string>& peers, const std::string& model_id, int64_t clients,
                            bool batching, int64_t vocab, int64_t long_prompt_tokens = 0) {
  std::mutex mutex;
  std::vector<double> steps_ms;
  std::vector<double> client_tokens_per_s;
  std::vector<std::string> errors;
  std::atomic<int64_t> decoding{0};  // clients past their second token
  Clock::time_point decoders_done;
  double long_prefill_s = 0;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int64_t c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        std::vector<double> mine;
        std::optional<Clock::time_point> last;
        const auto began = Clock::now();
        generate(head, peers, model_id, config.seed * 1000 + static_cast<uint64_t>(c), config.prompt_tokens,
                 config.new_tokens, vocab, [&](gpu::TokenId) {
                   const auto now = Clock::now();
                   if (last) mine.push_back(std::chrono::duration<double, std::milli>(now - *last).count());
                   if (mine.size() == 1) ++decoding;
                   last = now;
                 });
        const auto done = Clock::now();
        const double seconds = std::chrono::duration<double>(done - began).count();
        const std::lock_guard lock(mutex);
        steps_ms.insert(steps_ms.end(), mine.begin(), mine.end());
        client_tokens_per_s.push_back(static_cast<double>(config.new_tokens) / seconds);
        decoders_done = std::max(decoders_done, done);
      } catch (const std::exception& e) {
        const std::lock_guard lock(mutex);
        errors.push_back(e.what());
        ++decoding;  // the long prompt must not wait for it
      }
    });
  }
  if (long_prompt_tokens > 0) {
    threads.emplace_back([&] {
      while (decoding.load() < clients) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      try {
        const auto result = generate(head, peers, model_id, config.seed * 1000 + 999, long_prompt_tokens, 2, vocab,
                                     [](gpu::TokenId) {});
        const std::lock_guard lock(mutex);
        long_prefill_s = result.prefill_s;
      } catch (const std::exception& e) {
        const std::lock_guard lock(mutex);
        errors.push_back(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  if (!errors.empty()) throw std::runtime_error(fmt::format("bench-swarm --clients: a client failed: {}", errors[0]));
  const double wall_s = std::chrono::duration<double>(decoders_done - start).count();
  BenchClientsRow row;
  row.clients = clients;
  row.batching = batching;
  row.chunking = false;
  row.long_prefill_s = long_prefill_s;
  row.max_step_ms = steps_ms.empty() ? 0 : *std::max_element(steps_ms.begin(), steps_ms.end());
  row.aggregate_tokens_per_s = static_cast<double>(clients * config.new_tokens) / wall_s;
  double sum = 0;
  for (double v : client_tokens_per_s) sum += v;
  row.per_client_tokens_per_s = sum / static_cast<double>(client_tokens_per_s.size());
  row.p50_step_ms = percentile(steps_ms, 0.5);
  row.p99_step_ms = percentile(steps_ms, 0.99);
  return row;
}

}  // namespace

BenchClientsResult bench_clients(const BenchClientsConfig& config) {
  if (config.clients.empty()) throw std::invalid_argument("--clients needs at least one number");
  for (int64_t n : config.clients) {
    if (n < 1 || n > 256) throw std::invalid_argument(fmt::format("--clients: {} is not in 1..256", n));
  }
  if (config.new_tokens < 2 || config.prompt_tokens < 1) {
    throw std::invalid_argument("--new-tokens must be at least 2 and --prompt-tokens positive");
  }
  if (config.long_prompt_tokens < 0 || config.long_prompt_tokens > 100000 || config.prefill_chunk < -1) {
    throw std::invalid_argument("--long-prompt must be in 0..100000 and --prefill-chunk at least 0");
  }
  if (config.servers < 1 || config.servers > config.blocks) {
    throw std::invalid_argument("--servers must be between 1 and the number of blocks");
  }
  at::set_num_threads(1);  // the clients' heads: the servers get the cores

  const bool temporary = config.dir.empty();
  fs::path dir = config.dir;
  if (temporary) {
    std::string pattern = (fs::temp_directory_path() / "bouquet-bench-clients-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("cannot make a temporary folder");
    dir = pattern;
  }
  BenchClientsResult result;
  result.config = config;
  try {
    gpu::TinyModelConfig model;
    model.out = dir / "model";
    model.layers = config.blocks;
    model.hidden = config.hidden;
    model.intermediate = config.hidden * 11 / 4;
    model.heads = std::max<int64_t>(1, config.hidden / 128);
    model.kv_heads = model.heads;
    model.vocab = 512;
    model.dtype = "f16";  // half the file; the servers compute in f32
    model.seed = config.seed;
    fmt::print(stderr, "bench-swarm --clients: writing {} blocks of hidden {} to {}\n", model.layers, model.hidden,
               model.out.string());
    gpu::write_tiny_checkpoint(model);
    const gpu::ClientHead head({model.out, "f32", "cpu"});
    const std::string model_id = model_fingerprint(model.out);

    // Batching on and off; with a long prompt, batching on with chunking on and off instead.
    const bool long_prompt = config.long_prompt_tokens > 0;
    for (const bool on : {true, false}) {
      const bool batching = long_prompt || on;
      std::vector<ServerProcess> servers;
      std::vector<std::string> peers;
      for (int64_t s = 0; s < config.servers; ++s) {
        const std::string span =
            fmt::format("{}:{}", config.blocks * s / config.servers, config.blocks * (s + 1) / config.servers);
        std::vector<std::string> args{"--model",         model.out.string(),
                                      "--blocks",        span,
                                      "--listen",        "127.0.0.1:0",
                                      "--threads",       std::to_string(config.threads),
                                      "--max-batch",     std::to_string(batching ? config.max_batch : 1),
                                      "--batch-wait-ms", fmt::format("{}", batching ? config.batch_wait_ms : 0.0)};
        if (long_prompt && !on) args.insert(args.end(), {"--prefill-chunk", "0"});
        if (long_prompt && on && config.prefill_chunk >= 0) {
          args.insert(args.end(), {"--prefill-chunk", std::to_string(config.prefill_chunk)});
        }
        servers.emplace_back(current_binary(), args, /*ready_timeout_s=*/600);
        peers.push_back(servers.back().address());
      }
      for (int64_t clients : config.clients) {
        result.rows.push_back(
            run_clients(config, head, peers, model_id, clients, batching, model.vocab, config.long_prompt_tokens));
        auto& row = result.rows.back();
        row.chunking = long_prompt && on;
        fmt::print(stderr,
                   "bench-swarm --clients: batching {}{}, {} clients: {:.1f} tokens/s in all, p50 step {:.1f} ms, "
                   "p99 {:.1f} ms\n",
                   batching ? "on" : "off", long_prompt ? (on ? ", chunked prefill" : ", prefill at once") : "",
                   clients, row.aggregate_tokens_per_s, row.p50_step_ms, row.p99_step_ms);
      }
    }
  } catch (...) {
    if (temporary) fs::remove_all(dir);
    throw;
  }
  if (temporary) fs::remove_all(dir);
  return result;
}

namespace {

const BenchClientsRow* find_row(const BenchClientsResult& r, int64_t clients, bool batching) {
  for (const auto& row : r.rows) {
    if (row.clients == clients && row.batching == batching) return &row;
  }
  return nullptr;
}

}  // namespace

std::string format_long_prompt(const BenchClientsResult& r) {
  const auto& c = r.config;
  std::string out = fmt::format(
      "bench-swarm --clients --long-prompt {}: {} bouquet serve processes on 127.0.0.1 ({} thread(s) each), {} "
      "blocks of hidden {}, batching on (--max-batch {}); the decoding clients generate {} tokens each from {}-token "
      "prompts, one more client sends a {}-token prompt once they all decode; servers chunking long steps "
      "(--prefill-chunk {}) and not (--prefill-chunk 0) in the same run\n",
      c.long_prompt_tokens, c.servers, c.threads, c.blocks, c.hidden,
      c.max_batch == 0 ? "default" : std::to_string(c.max_batch), c.new_tokens, c.prompt_tokens, c.long_prompt_tokens,
      c.prefill_chunk < 0 ? "default" : std::to_string(c.prefill_chunk));
  out += fmt::format("{:>8} {:>9} {:>12} {:>10} {:>10} {:>10} {:>12} {:>14}\n", "decoders", "chunking", "tokens/s",
                     "p50 ms", "p99 ms", "max ms", "prefill s", "p99 x chunked");
  for (const auto& row : r.rows) {
    const BenchClientsRow* chunked = nullptr;
    for (const auto& other : r.rows) {
      if (other.clients == row.clients && other.chunking) chunked = &other;
    }
    out += fmt::format("{:>8} {:>9} {:>12.1f} {:>10.1f} {:>10.1f} {:>10.1f} {:>12.2f} {:>14}\n", row.clients,
                       row.chunking ? "on" : "off", row.aggregate_tokens_per_s, row.p50_step_ms, row.p99_step_ms,
                       row.max_step_ms, row.long_prefill_s,
                       chunked ? fmt::format("{:.2f}", row.p99_step_ms / chunked->p99_step_ms) : "-");
  }
  return out;
}

std::string format_bench_clients(const BenchClientsResult& r) {
  const auto& c = r.config;
  if (c.long_prompt_tokens > 0) return format_long_prompt(r);
  std::string out = fmt::format(
      "bench-swarm --clients: {} bouquet serve processes on 127.0.0.1 ({} thread(s) each), {} blocks of hidden {}, "
      "{} new tokens per client; batching on (--max-batch {}, --batch-wait-ms {}) and off (--max-batch 1) in the "
      "same run\n",
      c.servers, c.threads, c.blocks, c.hidden, c.new_tokens,
      c.max_batch == 0 ? "default" : std::to_string(c.max_batch), c.batch_wait_ms);
  out += fmt::format("{:>8} {:>9} {:>12} {:>14} {:>10} {:>10} {:>11} {:>11}\n", "clients", "batching", "tokens/s",
                     "per client t/s", "p50 ms", "p99 ms", "x 1 client", "x no batch");
  for (const auto& row : r.rows) {
    const BenchClientsRow* one = find_row(r, 1, row.batching);
    const BenchClientsRow* off = find_row(r, row.clients, false);
    out += fmt::format("{:>8} {:>9} {:>12.1f} {:>14.1f} {:>10.1f} {:>10.1f} {:>11} {:>11}\n", row.clients,
                       row.batching ? "on" : "off", row.aggregate_tokens_per_s, row.per_client_tokens_per_s,
                       row.p50_step_ms, row.p99_step_ms,
                       one ? fmt::format("{:.2f}", row.aggregate_tokens_per_s / one->aggregate_tokens_per_s) : "-",
                       off ? fmt::format("{:.2f}", row.aggregate_tokens_per_s / off->aggregate_tokens_per_s) : "-");
  }
  return out;
}

std::string bench_clients_json(const BenchClientsResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    rows.push_back({{"clients", row.clients},
                    {"batching", row.batching},
                    {"aggregate_tokens_per_s", row.aggregate_tokens_per_s},
                    {"per_client_tokens_per_s", row.per_client_tokens_per_s},
                    {"p50_step_ms", row.p50_step_ms},
                    {"p99_step_ms", row.p99_step_ms},
                    {"max_step_ms", row.max_step_ms},
                    {"chunking", row.chunking},
                    {"long_prefill_s", row.long_prefill_s}});
  }
  const auto& c = r.config;
  return nlohmann::json{{"servers", c.servers},
                        {"threads", c.threads},
                        {"blocks", c.blocks},
                        {"hidden", c.hidden},
                        {"new_tokens", c.new_tokens},
                        {"max_batch", c.max_batch},
                        {"batch_wait_ms", c.batch_wait_ms},
                        {"long_prompt_tokens", c.long_prompt_tokens},
                        {"prefill_chunk", c.prefill_chunk},
                        {"rows", rows}}
      .dump();
}

}  // namespace bouquet::net
