#include "gpu/gguf_tokenizer.h"

#include "gpu/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace bouquet::gpu {
namespace {

using Json = nlohmann::json;

// llama.cpp's token types (llama.h: LLAMA_TOKEN_TYPE_*).
constexpr int64_t kControl = 3;
constexpr int64_t kUserDefined = 4;

const Json kByteLevel = {
    {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};

// llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3 pattern.
constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// The tokenizer.json pre_tokenizer of llama.cpp's pre-tokenizer name (llama-vocab.cpp).
Json pre_tokenizer(const GgufFile& file) {
  const std::string pre = file.has("tokenizer.ggml.pre") ? file.string("tokenizer.ggml.pre") : "default";
  if (pre == "default" || pre == "gpt2" || pre == "gpt-2") return kByteLevel;
  if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    return {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, kByteLevel}}};
  }
  if (pre == "llama-bpe" || pre == "llama3") {
    Json byte_level = kByteLevel;
    byte_level["use_regex"] = false;
    return {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level}}};
  }
  throw std::runtime_error(
      fmt::format("{}: metadata 'tokenizer.ggml.pre' is '{}'; Bouquet knows default, gpt2, "
                  "smollm, starcoder, refact and llama-bpe",
                  file.path().string(), pre));
}

const Json& array_of(const GgufFile& file, const char* key) {
  if (!file.has(key) || !file.metadata().at(key).is_array()) {
    throw std::runtime_error(fmt::format("{}: metadata '{}' is missing or not an array", file.path().string(), key));
  }
  return file.metadata().at(key);
}

std::optional<TokenId> id_of(const GgufFile& file, const char* key, size_t vocab) {
  if (!file.has(key)) return std::nullopt;
  const int64_t id = file.integer(key);
  if (id < 0 || static_cast<size_t>(id) >= vocab) {
    throw std::runtime_error(
        fmt::format("{}: metadata '{}' is {}, outside the {} tokens", file.path().string(), key, id, vocab));
  }
  return id;
}

// llama.cpp's "llama" vocabulary: SentencePiece pieces with scores and types, segmented by score as
// SentencePiece's BPE does, bytes as <0xNN> pieces when the vocabulary has them.
std::unique_ptr<Tokenizer> sentencepiece_from_metadata(const GgufFile& file) {
  const std::string where = file.path().string();
  const Json& tokens = array_of(file, "tokenizer.ggml.tokens");
  const Json& scores = array_of(file, "tokenizer.ggml.scores");
  const Json& types = array_of(file, "tokenizer.ggml.token_type");
  if (scores.size() != tokens.size() || types.size() != tokens.size()) {
    throw std::runtime_error(
        fmt::format("{}: metadata 'tokenizer.ggml.scores' and 'tokenizer.ggml.token_type' need "
                    "one entry per token",
                    where));
  }
  SentencePieceModel model;
  model.trainer.model_type = SentencePieceModel::ModelType::bpe;
  for (size_t id = 0; id < tokens.size(); ++id) {
    // A score is a float32 in the file's own writer; a float64 past float's range would make the
    // conversion below undefined behaviour.
    if (!tokens[id].is_string() || !scores[id].is_number() || !types[id].is_number_integer() ||
        types[id].get<int64_t>() < 1 || types[id].get<int64_t>() > 6 ||
        !(std::abs(scores[id].get<double>()) <= std::numeric_limits<float>::max())) {
      throw std::runtime_error(fmt::format("{}: token {} has a malformed piece, score or type", where, id));
    }
    const auto type = static_cast<SentencePieceModel::PieceType>(types[id].get<int32_t>());
    model.pieces.push_back({tokens[id].get<std::string>(), scores[id].get<float>(), type});
    if (type == SentencePieceModel::PieceType::byte) model.trainer.byte_fallback = true;
  }
  const auto id_or = [&](const char* key, int32_t fallback) {
    const auto id = id_of(file, key, tokens.size());
    return id ? static_cast<int32_t>(*id) : fallback;
  };
  model.trainer.unk_id = id_or("tokenizer.ggml.unknown_token_id", 0);
  model.trainer.bos_id = id_or("tokenizer.ggml.bos_token_id", -1);
  model.trainer.eos_id = id_or("tokenizer.ggml.eos_token_id", -1);
  model.trainer.vocab_size = static_cast<int32_t>(tokens.size());
  model.normalizer.name = "identity";
  model.normalizer.remove_extra_whitespaces = false;
  if (file.has("tokenizer.ggml.add_space_prefix")) {
    const Json& prefix = file.metadata().at("tokenizer.ggml.add_space_prefix");
    if (!prefix.is_boolean())
      throw std::runtime_error(fmt::format("{}: metadata 'tokenizer.ggml.add_space_prefix' is not a bool", where));
    model.normalizer.add_dummy_prefix = prefix.get<bool>();
  }
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(std::move(model), where);
  tokenizer->bos_id = id_of(file, "tokenizer.ggml.bos_token_id", tokens.size());
  tokenizer->eos_id = id_of(file, "tokenizer.ggml.eos_token_id", tokens.size());
  tokenizer->add_bos = tokenizer->bos_id.has_value();
  return tokenizer;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file) {
  const std::string where = file.path().string();
  const std::string model = file.has("tokenizer.ggml.model") ? file.string("tokenizer.ggml.model") : "";
  std::unique_ptr<Tokenizer> spm;
  if (model == "llama") spm = sentencepiece_from_metadata(file);
  if (spm) {
    if (file.has("tokenizer.ggml.add_bos_token")) {
      const Json& add = file.metadata().at("tokenizer.ggml.add_bos_token");
      if (!add.is_boolean())
        throw std::runtime_error(fmt::format("{}: metadata 'tokenizer.ggml.add_bos_token' is not a bool", where));
      spm->add_bos = add.get<bool>();
    }
    if (spm->add_bos && !spm->bos_id) {
      throw std::runtime_error(fmt::format("{}: add_bos_token is true but no tokenizer.ggml.bos_token_id", where));
    }
    return spm;
  }
  if (model != "gpt2") {
    throw std::runtime_error(
        fmt::format("{}: metadata 'tokenizer.ggml.model' is '{}'; Bouquet reads byte-level BPE "
                    "('gpt2') and SentencePiece ('llama') tokenizers from GGUF files",
                    where, model));
  }
  const Json& tokens = array_of(file, "tokenizer.ggml.tokens");
  const Json& merges = array_of(file, "tokenizer.ggml.merges");
  const Json types =
      file.has("tokenizer.ggml.token_type") ? file.metadata().at("tokenizer.ggml.token_type") : Json::array();
  if (!types.is_array() || (!types.empty() && types.size() != tokens.size())) {
    throw std::runtime_error(
        fmt::format("{}: metadata 'tokenizer.ggml.token_type' does not have one type per token", where));
  }
  Json vocab = Json::object();
  Json added = Json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens[id].is_string()) {
      throw std::runtime_error(fmt::format("{}: metadata 'tokenizer.ggml.tokens' entry {} is not a string", where, id));
    }
    const std::string& token = tokens[id].get_ref<const std::string&>();
    if (!vocab.contains(token)) vocab[token] = id;
    const int64_t type = types.empty() || !types[id].is_number_integer() ? 1 : types[id].get<int64_t>();
    if ((type == kControl || type == kUserDefined) && !token.empty()) {
      added.push_back({{"id", id},
                       {"content", token},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == kControl}});
    }
  }
  const Json config = {
      {"model", {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", merges}}},
      {"pre_tokenizer", pre_tokenizer(file)},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", std::move(added)},
  };
  auto tokenizer = std::make_unique<BpeTokenizer>(config, where);
  tokenizer->bos_id = id_of(file, "tokenizer.ggml.bos_token_id", tokens.size());
  tokenizer->eos_id = id_of(file, "tokenizer.ggml.eos_token_id", tokens.size());
  tokenizer->add_bos = false;
  if (file.has("tokenizer.ggml.add_bos_token")) {
    const Json& add = file.metadata().at("tokenizer.ggml.add_bos_token");
    if (!add.is_boolean())
      throw std::runtime_error(fmt::format("{}: metadata 'tokenizer.ggml.add_bos_token' is not a bool", where));
    tokenizer->add_bos = add.get<bool>();
  }
  if (tokenizer->add_bos && !tokenizer->bos_id) {
    throw std::runtime_error(fmt::format("{}: add_bos_token is true but no tokenizer.ggml.bos_token_id", where));
  }
  return tokenizer;
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::filesystem::path& path) {
  return load_gguf_tokenizer(GgufFile(path));
}

std::unique_ptr<Tokenizer> load_model_tokenizer(const std::filesystem::path& model) {
  if (is_gguf_path(model)) return load_gguf_tokenizer(model);
  return load_tokenizer(model);
}

}  // namespace bouquet::gpu
