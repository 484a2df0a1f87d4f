// `bouquet finetune`: parse flags into FinetuneConfig and train prompts (net/client/finetune_swarm.h).
#include "cli/command.h"
#include "net/client/finetune_swarm.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration finetune_command{
    "finetune", "Prompt tuning (ptune) or deep prompt tuning (deep_ptune) through servers or locally",
    [](CLI::App& sub) {
      auto config = std::make_shared<gpu::FinetuneConfig>();
      auto swarm = std::make_shared<net::SwarmGenerateOptions>();
      sub.add_option("--model", config->model, "Hugging Face model folder (head and tokenizer)")->required();
      sub.add_option("--initial-peers", swarm->initial_peers, "HOST:PORT,... of DHT nodes to find servers through")
          ->delimiter(',');
      sub.add_option("--model-name", swarm->model_name,
                     "With --initial-peers, the model's name in the DHT (default: the folder's name)");
      sub.add_option("--peers", swarm->peers, "HOST:PORT,... of servers that together hold every block");
      sub.add_flag("--local", config->local, "Run every block in this process (for comparisons)");
      sub.add_option("--mode", config->mode, "ptune (prepended embeddings) or deep_ptune (plus a prefix per block)")
          ->capture_default_str();
      sub.add_option("--pre-seq-len", config->pre_seq_len, "Trainable prefix positions")->capture_default_str();
      sub.add_option("--data", config->data, "JSON lines of {\"prompt\": ..., \"completion\": ...}")->required();
      sub.add_option("--steps", config->steps, "Optimizer steps")->capture_default_str();
      sub.add_option("--lr", config->lr, "Adam learning rate")->capture_default_str();
      sub.add_option("--out", config->out, "Where to write the prompts (.safetensors)");
      sub.add_option("--seed", config->seed, "Seed of the prompts' start, minibatches and routing")
          ->capture_default_str();
      sub.add_option("--batch-size", config->batch_size, "Examples per step (0: all)")->capture_default_str();
      sub.add_option("--compression", swarm->compression, "With --peers, on the wire: none, f16, int8")
          ->capture_default_str();
      sub.add_option("--spot-check-rate", swarm->spot_check_rate,
                     "With --peers or --initial-peers, the fraction of hop forwards re-run on another server to "
                     "catch a lying one (0 = off)")
          ->capture_default_str()
          ->check(finite_in(0, 1));
      sub.add_option("--threads", config->threads, "CPU threads (0 = libtorch's default)")->check(CLI::Range(0, 4096));
      sub.add_flag("--quiet", config->quiet, "No per-step progress lines");
      sub.add_flag("--json", config->json,
                   "Print the report as one JSON object (losses, seconds and pass shape of each step, route)");
      return [config, swarm] { return net::run_finetune(*config, *swarm); };
    }};

}  // namespace
}  // namespace bouquet::cli
