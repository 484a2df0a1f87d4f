#include "tokenizer/bpe_tokenizer.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <stdexcept>

namespace bouquet::gpu {
namespace {

using Json = nlohmann::json;

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool is_word_byte(char c) {
  const auto u = static_cast<uint8_t>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

// Bytes of the character at `pos` (1 inside malformed UTF-8, which stays byte by byte).
size_t char_length(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (pos + length > text.size()) return 1;
  for (size_t i = 1; i < length; ++i)
    if ((static_cast<uint8_t>(text[pos + i]) & 0xC0) != 0x80) return 1;
  return length;
}

// The code point of a well-formed character of `length` bytes.
uint32_t code_point(std::string_view ch) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(ch[i])); };
  switch (ch.size()) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// A JSON integer as a token id. A float (1e96) is not an id: nlohmann's get<int64_t> would convert
// it with a cast that is undefined behaviour out of range (found by fuzz/tokenizer_json).
int64_t json_id(const Json& value, const std::string& source, std::string_view what) {
  if (!value.is_number_integer()) {
    throw std::runtime_error(fmt::format("{}: {} is {}, not an integer id", source, what, value.dump()));
  }
  return value.get<int64_t>();
}

}  // namespace

BpeTokenizer::BpeTokenizer(const Json& config, std::string source) : source_(std::move(source)) {
  try {
    if (!config.is_object()) throw std::runtime_error("the top level is not a JSON object");
    read_model(config.at("model"));
    read_normalizer(config.value("normalizer", Json()));
    pre_tokenizer_ = std::make_unique<BpePreTokenizer>(config.value("pre_tokenizer", Json()), source_);
    if (!pre_tokenizer_->byte_level())
      throw UnsupportedTokenizer(
          fmt::format("{}: only byte-level BPE tokenizers (a ByteLevel pre-tokenizer) are "
                      "supported",
                      source_));
    const Json decoder = config.value("decoder", Json());
    if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel")
      throw UnsupportedTokenizer(
          fmt::format("{}: decoder '{}' is not supported (only ByteLevel)", source_, decoder.value("type", "")));
    read_added_tokens(config.value("added_tokens", Json::array()));
    read_post_processor(config.value("post_processor", Json()));
  } catch (const Json::exception& e) {
    throw std::runtime_error(fmt::format("{}: not a valid tokenizer.json: {}", source_, e.what()));
  }
}

BpeTokenizer::~BpeTokenizer() = default;

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", file.string()));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  Json config;
  try {
    config = Json::parse(bytes.str());
  } catch (const Json::parse_error& e) {
    throw std::runtime_error(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  }
  return std::make_unique<BpeTokenizer>(config, file.string());
}

// Real vocabularies number their tokens 0..n-1 (added tokens continue the count): an id far past
// the number of tokens is a corrupt file, and the id tables, sized by the largest id, would take
// gigabytes for a few hundred tokens. Holes are allowed, up to as many as there are tokens.
void BpeTokenizer::check_id_density(int64_t id, int64_t tokens) const {
  const int64_t most = 2 * tokens + 1024;
  if (id >= most) {
    throw std::runtime_error(
        fmt::format("{}: token id {} is far past the {} tokens the file holds (ids above {} are refused)", source_, id,
                    tokens, most - 1));
  }
}

void BpeTokenizer::read_model(const Json& model) {
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") throw UnsupportedTokenizer(fmt::format("{}: model type '{}' is not supported", source_, type));
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json value = model.value(field, Json());
    if (!value.is_null() && !value.get<std::string>().empty())
      throw UnsupportedTokenizer(fmt::format("{}: BPE {} is not supported", source_, field));
  }
  for (const auto& [token, id] : model.at("vocab").items()) {
    const int64_t value = json_id(id, source_, fmt::format("the id of token '{}'", token));
    if (value < 0 || value > INT32_MAX)
      throw std::runtime_error(fmt::format("{}: token '{}' has id {}", source_, token, value));
    vocab_.emplace(token, static_cast<int32_t>(value));
    vocab_size_ = std::max<int64_t>(vocab_size_, value + 1);
  }
  check_id_density(vocab_size_ - 1, static_cast<int64_t>(vocab_.size()));
  id_to_token_.resize(vocab_size_);
  special_.assign(vocab_size_, 0);
  for (const auto& [token, id] : vocab_) id_to_token_[id] = token;

  const auto lookup = [&](const std::string& token) {
    const auto it = vocab_.find(token);
    if (it == vocab_.end())
      throw std::runtime_error(fmt::format("{}: merge uses '{}', which is not in the vocab", source_, token));
    return it->second;
  };
  int32_t rank = 0;
  for (const auto& merge : model.value("merges", Json::array())) {
    std::string left, right;
    if (merge.is_string()) {
      const auto text = merge.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        throw std::runtime_error(fmt::format("{}: merge {} is not two tokens separated by a space", source_, rank));
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else {
      if (!merge.is_array() || merge.size() != 2)
        throw std::runtime_error(fmt::format("{}: merge {} is not a pair", source_, rank));
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    }
    const int32_t merged = lookup(left + right);
    merges_.emplace(pair_key(lookup(left), lookup(right)), Merge{rank, merged});  // the first rank wins
    ++rank;
  }
  ignore_merges_ = model.value("ignore_merges", false);
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);
  const Json unk = model.value("unk_token", Json());
  if (!unk.is_null()) {
    const auto it = vocab_.find(unk.get<std::string>());
    if (it == vocab_.end()) throw std::runtime_error(fmt::format("{}: unk_token is not in the vocab", source_));
    unk_id_ = it->second;
  }
}

void BpeTokenizer::read_normalizer(const Json& normalizer) {
  if (normalizer.is_null()) return;
  const std::string type = normalizer.value("type", "");
  if (type == "Sequence") {
    for (const auto& inner : normalizer.at("normalizers")) read_normalizer(inner);
  } else if (type == "Prepend") {
    normalizations_.push_back({Normalization::Kind::prepend, "", normalizer.at("prepend").get<std::string>()});
  } else if (type == "Replace" && normalizer.at("pattern").contains("String")) {
    normalizations_.push_back({Normalization::Kind::replace, normalizer.at("pattern").at("String").get<std::string>(),
                               normalizer.at("content").get<std::string>()});
  } else {
    throw UnsupportedTokenizer(
        fmt::format("{}: normalizer '{}' is not supported (supported: Prepend, Replace with "
                    "a String pattern, Sequence)",
                    source_, type));
  }
}

void BpeTokenizer::read_added_tokens(const Json& tokens) {
  for (auto& buckets : added_by_first_byte_) buckets.assign(256, {});
  for (const auto& token : tokens) {
    AddedToken added{json_id(token.at("id"), source_, "an added token's id"),
                     token.at("content").get<std::string>(),
                     token.value("single_word", false),
                     token.value("lstrip", false),
                     token.value("rstrip", false),
                     token.value("special", false),
                     token.value("normalized", true),
                     ""};
    if (added.id < 0 || added.id > INT32_MAX || added.content.empty())
      throw std::runtime_error(fmt::format("{}: added token '{}' has id {}", source_, added.content, added.id));
    added.match = added.normalized ? normalize(added.content) : added.content;
    check_id_density(added.id, static_cast<int64_t>(vocab_.size() + tokens.size()));
    if (added.id >= vocab_size_) {
      vocab_size_ = added.id + 1;
      id_to_token_.resize(vocab_size_);
      special_.resize(vocab_size_, 0);
    }
    id_to_token_[added.id] = added.content;
    special_[added.id] = added.special ? 1 : 0;
    added_by_first_byte_[added.normalized][static_cast<uint8_t>(added.match[0])].push_back(added_.size());
    added_.push_back(std::move(added));
  }
  for (auto& buckets : added_by_first_byte_)
    for (auto& bucket : buckets)
      std::stable_sort(bucket.begin(), bucket.end(),
                       [&](size_t a, size_t b) { return added_[a].match.size() > added_[b].match.size(); });
}

void BpeTokenizer::read_post_processor(const Json& processor) {
  if (processor.is_null()) return;
  const std::string type = processor.value("type", "");
  if (type == "Sequence") {
    for (const auto& inner : processor.at("processors")) read_post_processor(inner);
  } else if (type == "TemplateProcessing") {
    const Json& single = processor.at("single");
    if (single.empty() || !single[0].contains("SpecialToken")) return;
    const std::string name = single[0].at("SpecialToken").at("id").get<std::string>();
    const Json& ids = processor.at("special_tokens").at(name).at("ids");
    if (ids.empty()) return;
    const int64_t bos = json_id(ids[0], source_, fmt::format("post-processor token '{}'", name));
    if (bos < 0 || bos >= vocab_size_) {
      throw std::runtime_error(
          fmt::format("{}: post-processor token '{}' has id {}, outside the vocabulary ({} tokens)", source_, name, bos,
                      vocab_size_));
    }
    template_bos_ = bos;
  }
}

std::optional<TokenId> BpeTokenizer::token_id(std::string_view token) const {
  for (const auto& added : added_)
    if (added.content == token) return added.id;
  if (const auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

size_t BpeTokenizer::next_added(std::string_view text, size_t from, bool normalized, size_t& begin, size_t& end) const {
  for (size_t pos = from; pos < text.size();) {
    size_t found = added_.size();
    for (const size_t index : added_by_first_byte_[normalized][static_cast<uint8_t>(text[pos])]) {
      if (text.substr(pos).starts_with(added_[index].match)) {
        found = index;
        break;  // the bucket is sorted longest first
      }
    }
    if (found == added_.size()) {
      ++pos;
      continue;
    }
    const AddedToken& token = added_[found];
    size_t stop = pos + token.match.size();
    if (token.single_word) {
      const bool word_before = pos > 0 && is_word_byte(text[pos - 1]);
      const bool word_after = stop < text.size() && is_word_byte(text[stop]);
      if (word_before || word_after) {  // not a word of its own: skip the whole match, as the library does
        pos = stop;
        continue;
      }
    }
    size_t start = pos;
    if (token.lstrip)
      while (start > from && is_ascii_space(text[start - 1])) --start;
    if (token.rstrip)
      while (stop < text.size() && is_ascii_space(text[stop])) ++stop;
    begin = start;
    end = stop;
    return found;
  }
  return added_.size();
}

std::string BpeTokenizer::normalize(std::string_view text) const {
  std::string out(text);
  for (const auto& step : normalizations_) {
    if (out.empty()) break;
    if (step.kind == Normalization::Kind::prepend) {
      out.insert(0, step.content);
    } else if (!step.pattern.empty()) {
      std::string replaced;
      size_t pos = 0;
      for (size_t hit; (hit = out.find(step.pattern, pos)) != std::string::npos; pos = hit + step.pattern.size())
        replaced.append(out, pos, hit - pos).append(step.content);
      replaced.append(out, pos);
      out = std::move(replaced);
    }
  }
  return out;
}

void BpeTokenizer::encode_segment(std::string_view raw, std::vector<TokenId>& ids) const {
  const std::string text = normalize(raw);
  size_t from = 0;
  while (from < text.size()) {
    size_t begin = 0, end = 0;
    const size_t index = next_added(text, from, true, begin, end);
    if (index == added_.size()) break;
    for (const auto& word : pre_tokenizer_->split(std::string_view(text).substr(from, begin - from)))
      encode_word(word, ids);
    ids.push_back(added_[index].id);
    from = end;
  }
  for (const auto& word : pre_tokenizer_->split(std::string_view(text).substr(from))) encode_word(word, ids);
}

std::vector<TokenId> BpeTokenizer::encode(std::string_view text) const {
  std::vector<TokenId> ids;
  size_t from = 0;
  while (from < text.size()) {
    size_t begin = 0, end = 0;
    const size_t index = next_added(text, from, false, begin, end);
    if (index == added_.size()) break;
    if (begin > from) encode_segment(text.substr(from, begin - from), ids);
    ids.push_back(added_[index].id);
    from = end;
  }
  if (from < text.size()) encode_segment(text.substr(from), ids);
  return ids;
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<TokenId>& ids) const {
  if (ignore_merges_) {
    if (const auto it = vocab_.find(word); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int prev, next;
    bool removed;
  };
  std::vector<Symbol> symbols;
  const auto add = [&](int32_t id) {
    const int index = static_cast<int>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back(Symbol{id, index - 1, -1, false});
  };
  std::optional<int32_t> pending_unk;  // fused unknown characters wait here
  for (size_t pos = 0; pos < word.size();) {
    const size_t length = char_length(word, pos);
    const std::string_view ch(word.data() + pos, length);
    pos += length;
    if (const auto it = vocab_.find(ch); it != vocab_.end()) {
      if (pending_unk) add(*std::exchange(pending_unk, std::nullopt));
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (const char c : ch) {
        const auto it = vocab_.find(fmt::format("<0x{:02X}>", static_cast<uint8_t>(c)));
        if (it == vocab_.end()) break;
        bytes.push_back(it->second);
      }
      if (bytes.size() == ch.size()) {
        if (pending_unk) add(*std::exchange(pending_unk, std::nullopt));
        for (const int32_t id : bytes) add(id);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !fuse_unk_) add(*pending_unk);
      pending_unk = *unk_id_;
    }
    // With neither byte fallback nor an unknown token the character is dropped, as the library does.
  }
  if (pending_unk) add(*pending_unk);

  struct Candidate {
    int32_t rank;
    int pos;
    int32_t merged_id;
  };
  // Lowest rank first; among equal ranks (the same pair), the leftmost.
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  const auto consider = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[symbols[left].next].id));
    if (it != merges_.end()) queue.push(Candidate{it->second.rank, left, it->second.merged_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale when either side changed since the candidate was queued.
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    consider(left.prev);
    consider(top.pos);
  }
  for (const auto& symbol : symbols)
    if (!symbol.removed) ids.push_back(symbol.id);
}

std::string BpeTokenizer::decode(const std::vector<TokenId>& ids) const {
  std::string out;
  for (const TokenId id : ids) {
    if (id < 0 || id >= vocab_size_ || special_[id]) continue;  // unknown ids decode to nothing
    const std::string& token = id_to_token_[id];
    std::string bytes;
    bool mapped = true;
    for (size_t pos = 0; pos < token.size() && mapped;) {
      const size_t length = char_length(token, pos);
      const int byte = length == 1 && static_cast<uint8_t>(token[pos]) >= 0x80
                           ? -1
                           : unicode_to_byte(code_point(std::string_view(token).substr(pos, length)));
      if (byte < 0)
        mapped = false;
      else
        bytes.push_back(static_cast<char>(byte));
      pos += length;
    }
    // A token with characters outside the byte map (an added token such as "<|eot_id|>" with a
    // space in it) stands for its own UTF-8 bytes, as in the library's ByteLevel decoder.
    out += mapped ? bytes : token;
  }
  return out;
}

}  // namespace bouquet::gpu
