// `bouquet bench-block`: parse flags into BenchBlockConfig and print the measurement.
#include "gpu/bench_block.h"
#include "cli/command.h"

#include <fmt/core.h>

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration bench_block_command{
    "bench-block", "Time one decode step of a Llama block against streaming its weights", [](CLI::App& sub) {
      auto config = std::make_shared<gpu::BenchBlockConfig>();
      sub.add_option("--hidden", config->hidden, "Hidden size")->capture_default_str();
      sub.add_option("--heads", config->heads, "Attention heads")->capture_default_str();
      sub.add_option("--kv-heads", config->kv_heads, "Key/value heads (0 = heads)");
      sub.add_option("--intermediate", config->intermediate, "MLP size")->capture_default_str();
      sub.add_option("--cached-tokens", config->cached_tokens, "Tokens already in the KV cache")->capture_default_str();
      sub.add_option("--steps", config->steps, "Decode steps timed")->capture_default_str();
      sub.add_option("--blocks", config->blocks, "Blocks in a chain, each with its own weights (a server's span)")
          ->capture_default_str();
      sub.add_option("--threads", config->threads, "CPU threads (0 = libtorch's default)");
      sub.add_option("--dtype", config->dtype, "Compute dtype: f32, f16, bf16")->capture_default_str();
      sub.add_option("--quant", config->quant,
                     "Weights: none, int8 (per-row scales), nf4 (4-bit, double-quantized absmaxes), nf4-nodq (f32 "
                     "absmaxes); f32 sums")
          ->capture_default_str();
      sub.add_option("--kernels", config->kernels, "Small-batch CPU kernels: best, libtorch, portable, avx2, avx512")
          ->capture_default_str();
      sub.add_option("--device", config->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
      sub.add_option("--seed", config->seed, "Seed of the random weights");
      sub.add_option("--batch", config->batches,
                     "Also time batched decode steps of these numbers of sessions (e.g. 1,2,4,8,16)")
          ->delimiter(',');
      return [config] {
        fmt::print("{}", gpu::format_bench_block(*config, gpu::bench_block(*config)));
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli
