// A .safetensors file as a user may bring it: opened, or refused with a ModelFileError naming the
// file and tensor (the JSON library's own exceptions included: issue 25 found one escaping); a
// file it opens gives every tensor's bytes. Never another exception, a crash, a leak or UB.
#include <cstdint>
#include <vector>

#include "fuzz/model_file_support.h"
#include "gpu/errors.h"
#include "gpu/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bouquet;
  const fuzz::MemoryFile file(data, size);
  try {
    const gpu::SafetensorsFile st(file.path());
    for (const auto& [name, info] : st.tensors()) {
      if (info.size_bytes() != static_cast<uint64_t>(info.numel()) * gpu::dtype_size_bytes(info.dtype)) std::abort();
      std::vector<uint8_t> raw(info.size_bytes());
      st.read_bytes(info, raw.data());
    }
  } catch (const gpu::ModelFileError&) {
  }
  return 0;
}
