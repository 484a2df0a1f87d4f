// `bouquet serve`: parse flags into net::ServeConfig and serve a span of blocks over TCP.
#include "cli/command.h"
#include "net/server/server.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration serve_command{
    "serve", "Serve a span of a model's blocks to clients over TCP", [](CLI::App& sub) {
      auto config = std::make_shared<net::ServeConfig>();
      sub.add_option("--model", config->model, "Hugging Face model folder, or a .gguf file")->required();
      sub.add_option("--blocks", config->blocks,
                     "Blocks to serve, A:B = blocks A to B-1 (pinned; without it, --initial-peers chooses)");
      sub.add_option("--listen", config->listen, "HOST:PORT to listen on (port 0: any free port)")
          ->capture_default_str();
      sub.add_option("--announce-addr", config->announce_addr,
                     "HOST:PORT clients should use (default: the listen address)");
      sub.add_option("--cache-tokens", config->cache_tokens, "Attention-cache budget, tokens per block")
          ->capture_default_str()
          ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
      sub.add_option("--device", config->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
      sub.add_option("--dtype", config->dtype, "Compute dtype: f32, f16, bf16")->capture_default_str();
      sub.add_option("--quant", config->quant,
                     "Weights: none, int8 (per-row scales), nf4 (4-bit, double-quantized absmaxes), nf4-nodq (f32 "
                     "absmaxes); f32 sums")
          ->capture_default_str();
      sub.add_option("--threads", config->threads, "CPU threads for compute (0 = libtorch's default)")
          ->capture_default_str()
          ->check(CLI::Range(0, 4096));
      sub.add_option("--max-batch", config->max_batch,
                     "Rows (batch x tokens) of concurrent sessions' decode steps run as one computation "
                     "(0 = sized for the device, 1 = no batching)")
          ->capture_default_str()
          ->check(CLI::Range(uint32_t{0}, uint32_t{4096}));
      sub.add_option("--batch-wait-ms", config->batch_wait_ms,
                     "Longest a step waits for other sessions' steps to join its batch (0 = take what is queued)")
          ->capture_default_str()
          ->check(finite_in(0, 10000));
      auto prefill_chunk = std::make_shared<uint32_t>(0);
      CLI::Option* prefill_chunk_option =
          sub.add_option("--prefill-chunk", *prefill_chunk,
                         "Rows (batch x tokens) of a step computed at once: a longer prompt or replay runs in "
                         "chunks, other sessions' decode steps between them (default: the max batch; 0 = never "
                         "split)")
              ->check(CLI::Range(uint32_t{0}, uint32_t{1} << 20));
      sub.add_option("--session-idle-timeout", config->session_idle_timeout_s,
                     "Close a session after this many seconds without a step")
          ->capture_default_str()
          ->check(finite_in(0.001, 1e7));
      sub.add_option("--frame-timeout", config->frame_timeout_s, "Seconds a begun frame may take to arrive")
          ->capture_default_str()
          ->check(finite_in(0.001, 1e7));
      // 0 accepted no frame at all, and clients hung.
      sub.add_option("--max-frame-bytes", config->max_frame_bytes, "Largest frame body accepted")
          ->capture_default_str()
          ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 32));
      sub.add_option("--max-connections", config->max_connections,
                     "Connections served at once; more are answered overloaded and closed")
          ->capture_default_str()
          ->check(CLI::Range(uint32_t{1}, uint32_t{1} << 20));
      sub.add_option("--idle-timeout,--idle-timeout-s", config->idle_timeout_s,
                     "Close a connection with no session here after this many seconds without a byte (0 = never)")
          ->capture_default_str()
          ->check(finite_in(0, 1e7));
      sub.add_option("--request-tokens-max", config->request_tokens_max,
                     "Most batch x tokens of one forward or backward (announced; clients split to it; 0 = no cap)")
          ->capture_default_str();
      sub.add_option("--client-cache-tokens-max", config->client_cache_tokens_max,
                     "Cache tokens per block one client may hold or wait for (0 = no quota)")
          ->capture_default_str();
      sub.add_option("--client-opens-waiting-max", config->client_opens_waiting_max,
                     "Opens one client may have waiting for cache room (0 = no cap)")
          ->capture_default_str();
      sub.add_option("--client-tasks-queued-max", config->client_tasks_queued_max,
                     "Forward/backward passes one client may have queued (0 = no cap)")
          ->capture_default_str();
      sub.add_option("--tasks-queued-max", config->tasks_queued_max,
                     "Forward/backward passes queued from all clients (0 = no cap)")
          ->capture_default_str();
      sub.add_option("--session-idle-contended", config->session_idle_contended_s,
                     "Close a session after this many seconds without a step while others wait for cache (0 = off)")
          ->capture_default_str()
          ->check(finite_in(0, 1e7));
      sub.add_option("--crash-after-steps", config->crash_after_steps,
                     "Fault drill: serve N inference steps, then die at the next like SIGKILL (0 = never)")
          ->capture_default_str();
      sub.add_option("--lie-after-steps", config->lie_after_steps,
                     "Fault drill: compute N inference steps and forwards honestly, then return every output "
                     "scaled by --lie-scale (0 = never)")
          ->capture_default_str();
      sub.add_option("--lie-scale", config->lie_scale, "Fault drill: the factor --lie-after-steps scales outputs by")
          ->capture_default_str()
          ->check(finite_in(-1e6, 1e6));
      sub.add_option("--adapters", config->adapters,
                     "DIR,... LoRA adapter folders (PEFT layout) to serve; each is named by its folder")
          ->delimiter(',');
      sub.add_option("--initial-peers", config->initial_peers,
                     "HOST:PORT,... of DHT nodes: join the swarm, announce, choose and rebalance blocks")
          ->delimiter(',');
      sub.add_option("--model-name", config->model_name, "Model name in the DHT (default: the folder's name)");
      sub.add_option("--num-blocks", config->num_blocks,
                     "Blocks to hold when not pinned (default: as many as fit half the available memory)")
          ->check(CLI::Range(uint32_t{0}, uint32_t{65536}));
      sub.add_option("--update-period", config->update_period_s,
                     "Seconds between announcements; records expire twice that later")
          ->capture_default_str()
          ->check(finite_in(0.01, 1e7));
      sub.add_option("--join-delay", config->join_delay_s,
                     "Wait a random time up to this many seconds before choosing blocks")
          ->capture_default_str()
          ->check(finite_in(0, 1e7));
      sub.add_option("--balance-period", config->balance_period_s,
                     "Seconds between balance checks (randomized x0.5 to x1.5)")
          ->capture_default_str()
          ->check(finite_in(0.01, 1e7));
      sub.add_option("--balance-quality", config->balance_quality,
                     "Move iff the weakest block's throughput now / after < this (0 = never move)")
          ->capture_default_str()
          ->check(finite_in(0, 1));
      sub.add_option("--network-bps", config->network_bps, "Link speed in bits/s (default 100 Mbit/s)")
          ->check(finite_in(0, 1e15));
      sub.add_option("--throughput", config->throughput,
                     "Announced tokens/s per block (default: measured, cached in $BOUQUET_CACHE_DIR)")
          ->check(finite_in(0, 1e12));  // readers drop records claiming more (net/dht/dht_record.cpp)
      sub.add_option("--inference-rps", config->inference_rps,
                     "Announced one-token steps/s per block (default: measured, cached in $BOUQUET_CACHE_DIR)")
          ->check(finite_in(0, 1e12));
      sub.add_option("--dht-listen", config->dht_listen,
                     "UDP HOST:PORT of this server's DHT node (default: the listen host, any port)");
      sub.add_option("--identity", config->identity,
                     "FILE holding the key this server signs its DHT records with (made when missing; default: "
                     "a new key every start); the peer id is derived from it");
      sub.add_option("--seed", config->seed, "Seed of the balancing randomness (0 = from the peer id)");
      return [config, prefill_chunk, prefill_chunk_option] {
        if (prefill_chunk_option->count() > 0) config->prefill_chunk = *prefill_chunk;
        return net::serve(*config);
      };
    }};

}  // namespace
}  // namespace bouquet::cli
