#include "gpu/generate_local.h"

#include "core/check.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"

#include <unistd.h>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <optional>

namespace bouquet::gpu {

std::vector<TokenId> parse_prompt_ids(std::string_view text) {
  std::vector<TokenId> ids;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ',' || text[i] == ' ') {
      ++i;
      continue;
    }
    const size_t end = text.find_first_of(", ", i);
    const std::string_view item = text.substr(i, end == std::string_view::npos ? end : end - i);
    TokenId id = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (ec != std::errc() || ptr != item.data() + item.size() || id < 0) {
      throw InputError(fmt::format("--prompt-ids: '{}' is not a token id", item));
    }
    ids.push_back(id);
    i += item.size();
  }
  if (ids.empty()) throw InputError("--prompt-ids holds no ids");
  return ids;
}

GenerationRequest generation_request(const GenerateConfig& config, const Tokenizer* tokenizer,
                                     const ModelConfig& model) {
  GenerationRequest request;
  if (!config.prompt_ids.empty()) {
    request.prompt_ids = parse_prompt_ids(config.prompt_ids);
  } else {
    BOUQUET_CHECK(tokenizer != nullptr, "a text prompt needs a tokenizer");
    if (tokenizer->add_bos && tokenizer->bos_id) request.prompt_ids.push_back(*tokenizer->bos_id);
    const auto encoded = tokenizer->encode(config.prompt);
    request.prompt_ids.insert(request.prompt_ids.end(), encoded.begin(), encoded.end());
  }
  request.max_new_tokens = config.max_new_tokens;
  request.ignore_eos = config.ignore_eos;
  request.sampling = {config.temperature, config.top_k, config.top_p, config.repetition_penalty, config.seed};
  request.eos_ids = model.eos_token_ids;
  if (tokenizer && tokenizer->eos_id) request.eos_ids.push_back(*tokenizer->eos_id);
  return request;
}

GenerationResult generate_local(const GenerateConfig& config, const std::function<void(std::string_view)>& on_text) {
  if (!config.local) {
    throw InputError(
        "generate needs --local (every block in this process); networked "
        "generation is not available in this build");
  }
  if (config.prompt.empty() == config.prompt_ids.empty()) {
    throw InputError("give exactly one of --prompt and --prompt-ids");
  }
  if (config.threads < 0) throw InputError("--threads must be >= 0");
  if (config.threads > 0) at::set_num_threads(config.threads);

  // Ids given by hand need no tokenizer to run; the text is then left empty if none loads.
  std::unique_ptr<Tokenizer> tokenizer;
  try {
    tokenizer = load_model_tokenizer(config.model);
  } catch (const std::exception& e) {
    if (config.prompt_ids.empty()) throw;
    std::cerr << "bouquet: no tokenizer (" << e.what() << "); printing ids only\n";
  }

  const ClientHead head({config.model, config.dtype, config.device, config.quant});
  // Loading shows progress on a terminal only: scripts read generate's stderr.
  SpanRunner blocks({config.model, 0, -1, config.dtype, config.device, config.quant, {}, ::isatty(STDERR_FILENO) != 0});
  if (!config.adapter.empty()) {
    throw InputError("--adapter names an adapter of the swarm's servers; with --local use --adapter-dir DIR");
  }
  const std::string adapter =
      config.adapter_dir.empty() ? std::string() : blocks.load_adapter(config.adapter_dir).name();

  GenerationRequest request = generation_request(config, tokenizer.get(), head.model_config());
  request.adapter = adapter;

  std::optional<StreamDecoder> stream;
  if (tokenizer && on_text) stream.emplace(*tokenizer);
  SpanRunner* chain[] = {&blocks};
  GenerationResult result = generate_ids(head, chain, request, [&](TokenId id) {
    if (stream) on_text(stream->push(id));
  });
  if (stream) on_text(stream->finish());
  if (tokenizer) result.text = tokenizer->decode(result.ids);
  return result;
}

std::string generation_json(const GenerationResult& r) {
  const nlohmann::json json = {
      {"prompt_ids", r.prompt_ids},
      {"ids", r.ids},
      {"text", r.text},
      {"tokens_per_s", r.tokens_per_s},
      {"prefill_s", r.prefill_s},
      {"decode_s", r.decode_s},
      {"stop_reason", r.stop_reason},
  };
  // Generated text may hold invalid UTF-8 (a byte-fallback token cut mid-character): replace it
  // rather than fail.
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace bouquet::gpu
