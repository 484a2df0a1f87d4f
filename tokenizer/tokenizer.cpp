#include "tokenizer/tokenizer.h"

#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A JSON file of the model folder, or null when it is absent; corrupt JSON is an error naming it.
Json read_json_if_present(const fs::path& file) {
  if (!fs::exists(file)) return Json();
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", file.string()));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  try {
    Json json = Json::parse(bytes.str());
    if (!json.is_object()) throw std::runtime_error(fmt::format("{}: not a JSON object", file.string()));
    return json;
  } catch (const Json::parse_error& e) {
    throw std::runtime_error(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  }
}

std::optional<TokenId> token_id(const Tokenizer& tokenizer, std::string_view token) {
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tokenizer)) return bpe->token_id(token);
  if (const auto* sp = dynamic_cast<const SentencePieceTokenizer*>(&tokenizer)) return sp->piece_id(token);
  return std::nullopt;
}

// tokenizer_config.json names special tokens by their text, either as a string or as an
// AddedToken object with "content".
std::optional<TokenId> config_token(const Tokenizer& tokenizer, const Json& config, const char* key,
                                    const fs::path& file) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const Json& value = config[key];
  std::string text;
  if (value.is_string())
    text = value.get<std::string>();
  else if (value.is_object() && value.contains("content") && value["content"].is_string())
    text = value["content"].get<std::string>();
  else
    throw std::runtime_error(fmt::format("{}: {} is neither a string nor a token object", file.string(), key));
  const auto id = token_id(tokenizer, text);
  if (!id)
    throw std::runtime_error(fmt::format("{}: {} '{}' is not a token of the tokenizer", file.string(), key, text));
  return id;
}

// config.json gives ids directly, as a number or (Llama 3.1's eos) a list whose first entry counts.
// config.json's id of a special token (a number, or a list whose first number counts), checked
// against the vocabulary: an id past it would index the embeddings out of range.
std::optional<TokenId> config_id(const Json& config, const char* key, const fs::path& file, int64_t vocab_size) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const Json* value = &config[key];
  if (value->is_array() && !value->empty()) value = &(*value)[0];
  if (!value->is_number_integer())
    throw std::runtime_error(fmt::format("{}: {} is not a token id", file.string(), key));
  const auto id = value->get<int64_t>();
  if (id < 0 || id >= vocab_size) {
    throw std::runtime_error(
        fmt::format("{}: {} {} is outside the vocabulary ({} tokens)", file.string(), key, value->dump(), vocab_size));
  }
  return static_cast<TokenId>(id);
}

std::unique_ptr<Tokenizer> load_format(const fs::path& dir) {
  const fs::path json_file = dir / "tokenizer.json";
  const fs::path model_file = dir / "tokenizer.model";
  if (fs::exists(json_file)) {
    try {
      return BpeTokenizer::load(json_file);
    } catch (const UnsupportedTokenizer&) {
      // A Llama 2 folder ships both, its tokenizer.json being a SentencePiece-style one; the
      // tokenizer.model then gives the exact same ids.
      if (!fs::exists(model_file)) throw;
    }
  }
  if (fs::exists(model_file)) return SentencePieceTokenizer::load(model_file);
  throw std::runtime_error(fmt::format("{}: no tokenizer.json or tokenizer.model", dir.string()));
}

size_t utf8_sequence_length(uint8_t lead) {
  return lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
}

// How much of `text` is stable: all but a trailing incomplete UTF-8 sequence (more bytes may
// complete it) and trailing U+FFFD (SentencePiece's stand-in for bytes still incomplete).
size_t stable_length(std::string_view text) {
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t end = text.size();
  while (end > 0) {
    if (text.substr(0, end).ends_with(kReplacement)) {
      end -= kReplacement.size();
      continue;
    }
    size_t lead = end;
    while (lead > 0 && end - lead < 4 && (static_cast<uint8_t>(text[lead - 1]) & 0xC0) == 0x80) --lead;
    if (lead == 0) break;
    const size_t need = utf8_sequence_length(static_cast<uint8_t>(text[lead - 1]));
    if (need > 1 && end - (lead - 1) < need) {
      end = lead - 1;
      continue;
    }
    break;
  }
  return end;
}

bool is_clean_utf8(std::string_view text) {
  if (text.find("\xEF\xBF\xBD") != std::string_view::npos) return false;
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = valid_utf8_length(text.substr(pos));
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& model_dir) {
  std::unique_ptr<Tokenizer> tokenizer = load_format(model_dir);
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(tokenizer.get())) {
    // Byte-level BPE adds BOS through its post-processor template, when it has one.
    tokenizer->bos_id = bpe->template_bos();
    tokenizer->add_bos = bpe->template_bos().has_value();
  }
  const fs::path config_file = model_dir / "config.json";
  const Json config = read_json_if_present(config_file);
  const int64_t vocab = tokenizer->vocab_size();
  if (const auto id = config_id(config, "bos_token_id", config_file, vocab)) tokenizer->bos_id = id;
  if (const auto id = config_id(config, "eos_token_id", config_file, vocab)) tokenizer->eos_id = id;
  const fs::path tokenizer_config_file = model_dir / "tokenizer_config.json";
  const Json tokenizer_config = read_json_if_present(tokenizer_config_file);
  if (const auto id = config_token(*tokenizer, tokenizer_config, "bos_token", tokenizer_config_file))
    tokenizer->bos_id = id;
  if (const auto id = config_token(*tokenizer, tokenizer_config, "eos_token", tokenizer_config_file))
    tokenizer->eos_id = id;
  if (tokenizer_config.contains("add_bos_token")) {
    if (!tokenizer_config["add_bos_token"].is_boolean())
      throw std::runtime_error(fmt::format("{}: add_bos_token is not true or false", tokenizer_config_file.string()));
    tokenizer->add_bos = tokenizer_config["add_bos_token"].get<bool>();
  }
  if (tokenizer->add_bos && !tokenizer->bos_id)
    throw std::runtime_error(
        fmt::format("{}: the tokenizer should add BOS but names no BOS token", model_dir.string()));
  return tokenizer;
}

std::string StreamDecoder::push(TokenId id) {
  ids_.push_back(id);
  const std::string text = tokenizer_.decode(ids_);
  const size_t stable = stable_length(text);
  std::string out;
  if (stable > emitted_bytes_) {
    out = text.substr(emitted_bytes_, stable - emitted_bytes_);
    emitted_bytes_ = stable;
  }
  // Once everything is out, restart the window at the last few ids when they decode on their own
  // to exactly the end of the text: later ids decode after them as they would after the whole
  // stream (no leading space to strip, no byte sequence left open), and each push stays cheap.
  if (emitted_bytes_ == text.size() && !text.empty()) {
    for (size_t k = 1; k <= std::min<size_t>(4, ids_.size()); ++k) {
      const std::vector<TokenId> tail(ids_.end() - static_cast<std::ptrdiff_t>(k), ids_.end());
      const std::string tail_text = tokenizer_.decode(tail);
      if (tail_text.empty() || !std::string_view(text).ends_with(tail_text) || !is_clean_utf8(tail_text)) continue;
      ids_ = tail;
      emitted_bytes_ = tail_text.size();
      break;
    }
  }
  return out;
}

std::string StreamDecoder::finish() {
  const std::string text = tokenizer_.decode(ids_);
  std::string out = text.size() > emitted_bytes_ ? text.substr(emitted_bytes_) : std::string();
  ids_.clear();
  emitted_bytes_ = 0;
  return out;
}

}  // namespace bouquet::gpu
