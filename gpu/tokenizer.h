// Text <-> token ids for a model folder. One interface over the formats real checkpoints ship:
// SentencePiece `tokenizer.model` (Llama 2) and byte-level BPE `tokenizer.json` (Llama 3, BLOOM).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

using TokenId = int64_t;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Ids of `text`, without BOS/EOS; the caller adds BOS when the folder asks for it.
  virtual std::vector<TokenId> encode(std::string_view text) const = 0;
  // Exact bytes of `ids` as the model's own tokenizer decodes them (special tokens skipped).
  virtual std::string decode(const std::vector<TokenId>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;

  // From tokenizer_config.json / config.json where present, else the tokenizer's own.
  std::optional<TokenId> bos_id;
  std::optional<TokenId> eos_id;
  bool add_bos = true;
};

// Loads the folder's tokenizer: `tokenizer.json` when present, else `tokenizer.model`.
// Throws std::runtime_error naming the file when none is usable.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// Turns a stream of generated ids into text pieces as soon as they are whole UTF-8 and stable
// (a SentencePiece leading space or a multi-byte character split across tokens is held back).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Returns the newly completed text after appending `id` (possibly empty).
  std::string push(TokenId id);
  // Returns whatever is still held back.
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  std::vector<TokenId> ids_;
  size_t emitted_bytes_ = 0;
};

// Trains a SentencePiece BPE tokenizer with byte fallback and exactly `vocab_size` pieces
// (<unk>=0, <s>=1, </s>=2) on `corpus`, writing `out_dir/tokenizer.model`. Runs Debian's
// `spm_train` program in a child process.
void train_sentencepiece(const std::filesystem::path& corpus, int64_t vocab_size,
                         const std::filesystem::path& out_dir);

}  // namespace bouquet::gpu
