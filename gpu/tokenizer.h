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
  // Exact bytes of `ids` as the model's own tokenizer decodes them (special tokens skipped; ids
  // the tokenizer does not know, as in a model vocabulary padded past it, decode to nothing).
  virtual std::string decode(const std::vector<TokenId>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;

  // From tokenizer_config.json (token strings) / config.json (ids; the first of an eos list) where
  // present, else the tokenizer's own: SentencePiece's trainer ids, or the BOS that a byte-level
  // tokenizer's post-processor template puts first. add_bos: tokenizer_config.json's
  // add_bos_token, else true for SentencePiece and whether the template adds one for tokenizer.json.
  std::optional<TokenId> bos_id;
  std::optional<TokenId> eos_id;
  bool add_bos = true;
};

// Loads the folder's tokenizer: `tokenizer.json` when present, else `tokenizer.model` (also when
// the tokenizer.json is a kind this reader does not implement, such as Llama 2's SentencePiece-style
// one, and a tokenizer.model is there). Throws std::runtime_error naming the file when none is
// usable or a file is corrupt (truncated protobuf, bad JSON, a BOS/EOS token it does not know).
// A `.gguf` file gives the tokenizer of its metadata (gguf_tokenizer.h).
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// Turns a stream of generated ids into text pieces as soon as they are whole UTF-8 and stable
// (a SentencePiece leading space or a multi-byte character split across tokens is held back).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Returns the newly completed text after appending `id` (possibly empty).
  std::string push(TokenId id);
  // Returns whatever is still held back and ends the stream: the next push starts a new text.
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  std::vector<TokenId> ids_;
  size_t emitted_bytes_ = 0;
};

// Trains a SentencePiece BPE tokenizer with byte fallback and exactly `vocab_size` pieces
// (<unk>=0, <s>=1, </s>=2, no pad) on the text `corpus` (one sentence or paragraph a line), writing
// `out_dir/tokenizer.model`, normalized like Llama 2's (identity, dummy prefix, spaces kept, digits
// split). Runs Debian's `spm_train` program in a child process, single-threaded: the same corpus
// and vocab_size give the same file byte for byte. Throws std::runtime_error when spm_train is
// missing or fails (its messages included) or cannot reach `vocab_size` pieces on this corpus.
void train_sentencepiece(std::string_view corpus, int64_t vocab_size, const std::filesystem::path& out_dir);

// The English prose the repository ships for training tiny tokenizers (gpu/tiny/corpus.txt),
// compiled into the binary so that it is there whatever the working directory.
std::string_view tiny_corpus();

}  // namespace bouquet::gpu
