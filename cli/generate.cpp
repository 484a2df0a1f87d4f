// `bouquet generate`: parse flags into GenerateConfig and run the generation.
#include "cli/command.h"
#include "gpu/chat_template.h"
#include "gpu/generate_local.h"
#include "net/client/finetune_swarm.h"
#include "net/client/generate_swarm.h"

#include <fmt/core.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace bouquet::cli {
namespace {

const CommandRegistration generate_command{
    "generate", "Generate text with a model (--local: every block here; --peers: through servers)", [](CLI::App& sub) {
      auto config = std::make_shared<gpu::GenerateConfig>();
      auto swarm = std::make_shared<net::SwarmGenerateOptions>();
      sub.add_option("--model", config->model, "Hugging Face model folder, or a .gguf file")->required();
      auto* local = sub.add_flag("--local", config->local, "Run every block in this process");
      auto* peers = sub.add_option("--peers", swarm->peers, "HOST:PORT,... of servers that together hold every block")
                        ->excludes(local);
      sub.add_option("--initial-peers", swarm->initial_peers,
                     "HOST:PORT,... of DHT nodes: find the model's servers there and route by min latency")
          ->delimiter(',')
          ->excludes(local)
          ->excludes(peers);
      sub.add_option("--model-name", swarm->model_name,
                     "With --initial-peers, the model's name in the DHT (default: the folder's name)");
      sub.add_option("--compression", swarm->compression,
                     "With --peers or --initial-peers, on the wire: none, f16, int8")
          ->capture_default_str();
      sub.add_option("--recovery", swarm->recovery,
                     "With --peers, when a server fails: replay (its span's history to a replacement), "
                     "restart (from the prompt), cacheless (resend everything every step), "
                     "restart_from_scratch (generate everything again: the reference's baseline)")
          ->capture_default_str();
      sub.add_option("--recovery-deadline", swarm->recovery_deadline_s,
                     "With --peers, seconds to find a replacement for a failed span before giving up")
          ->capture_default_str()
          ->check(finite_in(0.001, 1e7));
      sub.add_option("--spot-check-rate", swarm->spot_check_rate,
                     "With --peers or --initial-peers, the fraction of steps each span re-runs on another server "
                     "to catch a lying one (0 = off)")
          ->capture_default_str()
          ->check(finite_in(0, 1));
      sub.add_option("--routing", swarm->routing,
                     "With --peers or --initial-peers, the planner: min_latency or greedy (default: greedy "
                     "with --peers, min_latency with --initial-peers)");
      auto* prompt = sub.add_option("--prompt", config->prompt, "Prompt text");
      auto* ids = sub.add_option("--prompt-ids", config->prompt_ids, "Prompt token ids, e.g. 1,2,3 (no BOS added)");
      prompt->excludes(ids);
      auto chat = std::make_shared<std::string>();
      auto chat_template = std::make_shared<std::string>();
      sub.add_option("--chat", *chat,
                     "A user message, put in the model's chat template (the assistant's answer follows)")
          ->excludes(prompt)
          ->excludes(ids);
      sub.add_option("--chat-template", *chat_template,
                     "With --chat: chatml, llama2 or llama3 instead of the model's own template");
      sub.add_option("--max-new-tokens", config->max_new_tokens, "Tokens to generate")
          ->capture_default_str()
          ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
      sub.add_flag("--ignore-eos", config->ignore_eos, "Keep going past an end-of-sequence token");
      sub.add_option("--temperature", config->temperature, "0 = greedy")
          ->capture_default_str()
          ->check(finite_in(0, 1e6));
      sub.add_option("--top-k", config->top_k, "Keep the k best tokens (0 = all)")
          ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
      sub.add_option("--top-p", config->top_p, "Keep the smallest set with this probability")
          ->check(finite_in(1e-9, 1));
      sub.add_option("--repetition-penalty", config->repetition_penalty,
                     "> 1 discourages tokens already in the sequence")
          ->check(finite_in(1e-6, 1e6));
      sub.add_option("--seed", config->seed, "Seed of the sampler")->capture_default_str();
      sub.add_option("--dtype", config->dtype, "Compute dtype: f32, f16, bf16")->capture_default_str();
      sub.add_option("--device", config->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
      sub.add_option("--quant", config->quant,
                     "With --local, block weights: none, int8 (per-row scales), nf4, nf4-nodq (4-bit)")
          ->capture_default_str();
      sub.add_option("--threads", config->threads, "CPU threads (0 = libtorch's default)")->check(CLI::Range(0, 4096));
      sub.add_flag("--json", config->json, "Print one JSON object instead of streaming text");
      sub.add_option("--adapter", config->adapter,
                     "With --peers or --initial-peers, the LoRA adapter the servers apply (its name)")
          ->excludes(local);
      sub.add_option("--adapter-dir", config->adapter_dir,
                     "With --local, a LoRA adapter folder (PEFT layout) to apply");
      auto prompts = std::make_shared<std::string>();
      sub.add_option("--prompts", *prompts, "PROMPTS.safetensors from bouquet finetune (refused for another model)");
      return [config, swarm, prompts, chat, chat_template] {
        if (!chat->empty()) {
          config->prompt = gpu::render_chat(gpu::load_chat_template(config->model, *chat_template), {{"user", *chat}});
        }
        if (!prompts->empty()) return net::run_generate_with_prompts(*config, *prompts, *swarm);
        if (!swarm->peers.empty() || !swarm->initial_peers.empty()) {
          return net::run_generate_through_swarm(*config, *swarm);
        }
        if (config->json) {
          fmt::print("{}\n", gpu::generation_json(gpu::generate_local(*config)));
          return 0;
        }
        const auto result = gpu::generate_local(*config, [](std::string_view piece) {
          fmt::print("{}", piece);
          std::fflush(stdout);
        });
        fmt::print("\n");
        std::fflush(stdout);  // the text line first, then the summary, even when both go to a file
        fmt::print(stderr, "[{} tokens, {:.1f} tokens/s, stop: {}]\n", result.ids.size(), result.tokens_per_s,
                   result.stop_reason);
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli
