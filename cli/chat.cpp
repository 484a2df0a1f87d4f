// `bouquet chat --local`: an interactive conversation in the terminal, one line a message, the
// answer streamed as it is generated; the session (and its cache) stays open across turns.
#include "cli/command.h"
#include "gpu/chat_local.h"

#include <fmt/core.h>

#include <unistd.h>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

namespace bouquet::cli {
namespace {

const CommandRegistration chat_command{
    "chat", "Talk with an instruct model (--local: every block here), one line a message", [](CLI::App& sub) {
      auto config = std::make_shared<gpu::GenerateConfig>();
      auto chat_template = std::make_shared<std::string>();
      config->max_new_tokens = 256;
      sub.add_option("--model", config->model, "Hugging Face model folder, or a .gguf file")->required();
      sub.add_flag("--local", config->local, "Run every block in this process")->required();
      sub.add_option("--chat-template", *chat_template, "chatml, llama2 or llama3 instead of the model's own");
      sub.add_option("--max-new-tokens", config->max_new_tokens, "Most tokens of one answer")
          ->capture_default_str()
          ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
      sub.add_option("--temperature", config->temperature, "0 = greedy")
          ->capture_default_str()
          ->check(finite_in(0, 1e6));
      sub.add_option("--top-p", config->top_p, "Keep the smallest set with this probability")
          ->check(finite_in(1e-9, 1));
      sub.add_option("--seed", config->seed, "Seed of the sampler")->capture_default_str();
      sub.add_option("--dtype", config->dtype, "Compute dtype: f32, f16, bf16")->capture_default_str();
      sub.add_option("--device", config->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
      sub.add_option("--quant", config->quant, "Block weights: none, int8 (per-row scales), nf4, nf4-nodq (4-bit)")
          ->capture_default_str();
      sub.add_option("--threads", config->threads, "CPU threads (0 = libtorch's default)")->check(CLI::Range(0, 4096));
      return [config, chat_template] {
        gpu::LocalChat chat(*config, *chat_template);
        const bool interactive = ::isatty(STDIN_FILENO) != 0;
        std::string line;
        while (true) {
          if (interactive) fmt::print(stderr, "you> ");
          if (!std::getline(std::cin, line) || line == "/exit") break;
          if (line.empty()) continue;
          chat.reply(line, [](std::string_view piece) {
            fmt::print("{}", piece);
            std::fflush(stdout);
          });
          fmt::print("\n");
          std::fflush(stdout);
        }
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli
