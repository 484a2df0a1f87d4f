#include "tokenizer/bpe_train.h"

#include "tokenizer/bpe_pretokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bouquet::gpu {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kSpecialTokens[] = {"<unk>", "<s>", "</s>", "<pad>"};
constexpr int64_t kFirstByteId = 4;
constexpr int64_t kFirstMergeId = kFirstByteId + 256;

// BLOOM's pre-tokenizer as its tokenizer.json states it.
Json bloom_pre_tokenizer() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", " ?[^(\\s|[.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c])]+"}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

size_t utf8_length(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

struct Word {
  std::vector<int32_t> ids;
  int64_t count = 0;
};

// Replaces every non-overlapping (left, right), left to right, by `merged`.
void apply_merge(std::vector<int32_t>& ids, int32_t left, int32_t right, int32_t merged) {
  size_t out = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i + 1 < ids.size() && ids[i] == left && ids[i + 1] == right) {
      ids[out++] = merged;
      ++i;
    } else {
      ids[out++] = ids[i];
    }
  }
  ids.resize(out);
}

}  // namespace

void train_byte_level_bpe(std::string_view corpus, int64_t vocab_size, const std::filesystem::path& out_dir) {
  if (vocab_size <= kFirstMergeId) {
    throw std::runtime_error(
        fmt::format("a byte-level tokenizer needs a vocabulary above {} "
                    "(4 special and 256 byte tokens), not {}",
                    kFirstMergeId, vocab_size));
  }
  std::vector<std::string> tokens(std::begin(kSpecialTokens), std::end(kSpecialTokens));
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < tokens.size(); ++i) ids.emplace(tokens[i], static_cast<int32_t>(i));
  for (const std::string& mapped : byte_to_unicode()) {
    ids.emplace(mapped, static_cast<int32_t>(tokens.size()));
    tokens.push_back(mapped);
  }

  const Json pre_tokenizer_json = bloom_pre_tokenizer();
  const BpePreTokenizer pre_tokenizer(pre_tokenizer_json, "the tiny tokenizer");
  std::map<std::string, int64_t> counts;
  for (std::string& word : pre_tokenizer.split(corpus)) ++counts[std::move(word)];
  std::vector<Word> words;
  for (const auto& [text, count] : counts) {
    Word word{{}, count};
    for (size_t i = 0; i < text.size(); i += utf8_length(static_cast<unsigned char>(text[i]))) {
      word.ids.push_back(ids.at(text.substr(i, utf8_length(static_cast<unsigned char>(text[i])))));
    }
    words.push_back(std::move(word));
  }

  Json merges = Json::array();
  while (static_cast<int64_t>(tokens.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;
    for (const Word& word : words) {
      for (size_t i = 0; i + 1 < word.ids.size(); ++i) pairs[{word.ids[i], word.ids[i + 1]}] += word.count;
    }
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 1;
    for (const auto& [pair, count] : pairs) {
      if (count > best_count) best = pair, best_count = count;
    }
    if (best.first < 0) {
      throw std::runtime_error(
          fmt::format("the corpus runs out of repeated pairs at {} tokens, "
                      "before the vocabulary of {}",
                      tokens.size(), vocab_size));
    }
    const std::string joined = tokens[best.first] + tokens[best.second];
    // Two merges can spell the same token ("ab c", "a bc"); it keeps its first id.
    auto [it, added] = ids.emplace(joined, static_cast<int32_t>(tokens.size()));
    if (added) tokens.push_back(joined);
    merges.push_back(tokens[best.first] + " " + tokens[best.second]);
    for (Word& word : words) apply_merge(word.ids, best.first, best.second, it->second);
  }

  Json added_tokens = Json::array();
  for (size_t i = 0; i < std::size(kSpecialTokens); ++i) {
    added_tokens.push_back({{"id", i},
                            {"content", kSpecialTokens[i]},
                            {"single_word", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"normalized", false},
                            {"special", true}});
  }
  Json vocab = Json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  const Json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added_tokens},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer_json},
      {"post_processor",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", false}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", false}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", merges}}},
  };
  const std::filesystem::path file = out_dir / "tokenizer.json";
  std::ofstream out(file, std::ios::trunc | std::ios::binary);
  out << tokenizer.dump(2) << "\n";
  if (!out.flush()) throw std::runtime_error(fmt::format("{}: write failed", file.string()));
}

}  // namespace bouquet::gpu
