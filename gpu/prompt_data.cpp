#include "gpu/prompt_data.h"

#include "gpu/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace bouquet::gpu {

std::vector<FinetuneExample> load_finetune_data(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open the fine-tuning data", path.string()));
  std::vector<FinetuneExample> examples;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fail = [&](const std::string& why) {
      return InputError(fmt::format("{}:{}: {}", path.string(), number, why));
    };
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw fail(fmt::format("not valid JSON ({})", e.what()));
    }
    if (!json.is_object()) throw fail("expected a JSON object {\"prompt\": ..., \"completion\": ...}");
    for (const char* field : {"prompt", "completion"}) {
      if (!json.contains(field) || !json[field].is_string()) {
        throw fail(fmt::format("field \"{}\" is missing or not a string", field));
      }
    }
    FinetuneExample example{json["prompt"].get<std::string>(), json["completion"].get<std::string>()};
    if (example.completion.empty()) throw fail("\"completion\" is empty: there would be nothing to learn");
    examples.push_back(std::move(example));
  }
  if (examples.empty()) throw InputError(fmt::format("{}: holds no example", path.string()));
  return examples;
}

std::vector<TokenizedExample> tokenize_examples(const Tokenizer& tokenizer,
                                                const std::vector<FinetuneExample>& examples) {
  std::vector<TokenizedExample> out;
  for (const FinetuneExample& e : examples) {
    TokenizedExample t;
    if (tokenizer.add_bos && tokenizer.bos_id) t.prompt_ids.push_back(*tokenizer.bos_id);
    const auto prompt = tokenizer.encode(e.prompt);
    t.prompt_ids.insert(t.prompt_ids.end(), prompt.begin(), prompt.end());
    t.completion_ids = tokenizer.encode(e.completion);
    if (t.completion_ids.empty()) {
      throw InputError(fmt::format("completion '{}' encodes to no token", e.completion));
    }
    if (t.prompt_ids.empty()) throw InputError(fmt::format("prompt '{}' encodes to no token", e.prompt));
    out.push_back(std::move(t));
  }
  return out;
}

TrainingBatch make_batch(const std::vector<TokenizedExample>& examples, const std::vector<size_t>& rows,
                         TokenId pad_id) {
  size_t width = 0;
  for (size_t r : rows)
    width = std::max(width, examples.at(r).prompt_ids.size() + examples.at(r).completion_ids.size());
  const auto batch = static_cast<int64_t>(rows.size());
  at::Tensor ids = at::full({batch, static_cast<int64_t>(width)}, pad_id, at::kLong);
  at::Tensor targets = at::full({batch, static_cast<int64_t>(width)}, kIgnoreTarget, at::kLong);
  auto id = ids.accessor<int64_t, 2>();
  auto target = targets.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    const TokenizedExample& e = examples.at(rows[b]);
    const size_t n = e.prompt_ids.size();
    for (size_t t = 0; t < n; ++t) id[b][t] = e.prompt_ids[t];
    for (size_t t = 0; t < e.completion_ids.size(); ++t) {
      id[b][n + t] = e.completion_ids[t];
      target[b][n + t - 1] = e.completion_ids[t];  // predicted from the position before it
    }
  }
  return {ids, targets};
}

}  // namespace bouquet::gpu
