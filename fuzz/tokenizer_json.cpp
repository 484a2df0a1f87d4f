// A tokenizer.json as a model folder may carry it: a byte-level BPE tokenizer, or a
// std::runtime_error naming the file (UnsupportedTokenizer for kinds this reader does not
// implement); a tokenizer it builds encodes any text to ids inside its vocabulary. Never another
// exception, a crash, a leak or UB (issue 25).
#include <cstdint>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "fuzz/model_file_support.h"
#include "tokenizer/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet;
  // The file reader parses JSON the same way; text that is not JSON never reaches the tokenizer.
  const nlohmann::json config = nlohmann::json::parse(data, data + size, nullptr, false);
  if (config.is_discarded()) return 0;
  try {
    const gpu::BpeTokenizer tokenizer(config, "fuzz/tokenizer.json");
    fuzz::exercise_tokenizer(tokenizer);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
