// `bouquet bench-swarm --clients 1,2,4,8,16`: what continuous batching buys when many people use
// one swarm at once. Two `bouquet serve` processes on loopback (one compute thread each) hold a
// model written on the fly (8 blocks of hidden 2048 by default, random weights, a small vocabulary
// so the clients' LM heads cost little next to the servers' blocks). For each number of
// concurrent clients, every client generates the same number of tokens from its own prompt at
// the same time; the run is made twice in the same process, with the servers batching
// (--max-batch, default: sized for the device) and with batching off (--max-batch 1). Reported
// per row: aggregate tokens/s, per-client tokens/s, p50/p99 decode-step latency, and the ratios
// against the 1-client figure and against batching off.
//
// With long_prompt_tokens (`--long-prompt N`): chunked prefill instead. Besides the decoding
// clients, one more client sends an N-token prompt once every decoder has begun decoding; the
// run is made with the servers chunking long steps (--prefill-chunk, default: the max batch) and
// with chunking off (--prefill-chunk 0), batching on in both. Reported per row: the decoders'
// p50/p99/max step latency and tokens/s, and the long prompt's prefill time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bouquet::net {

struct BenchClientsConfig {
  std::vector<int64_t> clients = {1, 2, 4, 8};
  int64_t servers = 2;
  int64_t blocks = 8;
  int64_t hidden = 2048;
  int64_t prompt_tokens = 8;
  int64_t new_tokens = 32;         // per client; decode steps timed: new_tokens - 1
  int threads = 1;                 // compute threads per server
  uint32_t max_batch = 0;          // the batching run's --max-batch (0 = the server's default)
  double batch_wait_ms = 0;        // the batching run's --batch-wait-ms
  std::string dir;                 // where to write the model; "" = a fresh temporary folder, removed after
  int64_t long_prompt_tokens = 0;  // > 0: measure chunked prefill against a prompt this long
  int64_t prefill_chunk = -1;      // the chunking run's --prefill-chunk (-1 = the server's default)
  uint64_t seed = 0;
};

struct BenchClientsRow {
  int64_t clients = 0;
  bool batching = false;
  double aggregate_tokens_per_s = 0;
  double per_client_tokens_per_s = 0;  // mean over clients
  double p50_step_ms = 0;
  double p99_step_ms = 0;
  // Long-prompt runs only.
  bool chunking = false;
  double max_step_ms = 0;
  double long_prefill_s = 0;  // the long prompt through every server, to its first token
};

struct BenchClientsResult {
  BenchClientsConfig config;
  // Batching on, then off, each over config.clients; with a long prompt, chunking on, then off.
  std::vector<BenchClientsRow> rows;
};

BenchClientsResult bench_clients(const BenchClientsConfig& config);
std::string format_bench_clients(const BenchClientsResult& result);
std::string bench_clients_json(const BenchClientsResult& result);

}  // namespace bouquet::net
