// A tokenizer.model (SentencePiece's protobuf, read by hand): parsed, or refused with a
// std::runtime_error naming the file; a model it parses serializes to bytes that parse back to it,
// and a tokenizer built from it encodes any text to ids inside its vocabulary (or is refused by
// name). Never another exception, a crash, a leak or UB (issue 25).
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "fuzz/model_file_support.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/sentencepiece_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet::gpu;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  SentencePieceModel model;
  try {
    model = parse_sentencepiece_model(bytes, "fuzz/tokenizer.model");
  } catch (const std::runtime_error&) {
    return 0;
  }
  const std::string again = serialize_sentencepiece_model(model);
  if (serialize_sentencepiece_model(parse_sentencepiece_model(again, "again")) != again) std::abort();
  try {
    const SentencePieceTokenizer tokenizer(std::move(model), "fuzz/tokenizer.model");
    bouquet::fuzz::exercise_tokenizer(tokenizer);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
