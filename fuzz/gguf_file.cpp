// A GGUF file as a user may bring it (or a download may truncate it): opened, or refused with a
// ModelFileError naming the file; a file it opens gives every tensor's bytes, dequantized, and its
// tokenizer either loads (and then encodes any text to ids inside its vocabulary) or is refused
// with a std::runtime_error. Never another exception, a crash, a leak or UB.
#include <cstdint>
#include <vector>

#include "fuzz/model_file_support.h"
#include "gpu/errors.h"
#include "gpu/gguf.h"
#include "gpu/gguf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet;
  const fuzz::MemoryFile file(data, size);
  try {
    const gpu::GgufFile gguf(file.path());
    for (const auto& [name, tensor] : gguf.tensors()) {
      std::vector<uint8_t> raw(tensor.size_bytes);
      gguf.read_bytes(tensor, raw.data());
      if (!gpu::ggml_type_info(tensor.type)) std::abort();  // the reader let an unknown type through
      std::vector<float> values(static_cast<size_t>(tensor.numel()));
      gpu::dequantize(tensor.type, raw.data(), tensor.numel(), values.data());
    }
    try {
      fuzz::exercise_tokenizer(*gpu::load_gguf_tokenizer(gguf));
    } catch (const gpu::ModelFileError&) {
    } catch (const std::runtime_error&) {
    }
  } catch (const gpu::ModelFileError&) {
  }
  return 0;
}
