// Trains a small byte-level BPE tokenizer and writes it as a Hugging Face tokenizer.json laid out
// like BLOOM's, so that tiny BLOOM models exercise the same tokenizer path as real ones.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace bouquet::gpu {

// Writes `out_dir/tokenizer.json` with exactly `vocab_size` ids: <unk> <s> </s> <pad> (0..3,
// special added tokens), the 256 byte tokens (4..259, in byte order, GPT-2's byte-to-unicode
// characters), then merges learnt on `corpus`. Words come from BLOOM's pre-tokenizer (its Split
// regex, then ByteLevel without a prefix space); each merge joins the adjacent pair most frequent
// in the corpus, the lowest pair of ids among equals, so the same corpus gives the same file.
// Throws std::runtime_error when vocab_size is below 261 or the corpus runs out of pairs seen
// twice before reaching it.
void train_byte_level_bpe(std::string_view corpus, int64_t vocab_size, const std::filesystem::path& out_dir);

}  // namespace bouquet::gpu
