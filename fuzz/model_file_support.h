// Shared by the harnesses of model files (GGUF, safetensors, tokenizers): fuzzer bytes as a file
// the readers open by path, and what any tokenizer a reader accepts must do.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace bouquet::fuzz {

// The bytes as an anonymous in-memory file, named by a /proc/self/fd path (no disk, no cleanup).
class MemoryFile {
 public:
  MemoryFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("fuzz", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  ~MemoryFile() { ::close(fd_); }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
};

// Whatever a tokenizer file holds, a tokenizer that loaded must encode any text to ids inside its
// vocabulary (each becomes an embedding row), decode any ids (unknown ones to nothing) and stream.
inline void exercise_tokenizer(const gpu::Tokenizer& tokenizer) {
  static const char* const kTexts[] = {
      "",
      "Hello, world! 1234 <s></s><|endoftext|>",
      "  leading\tand\n\ntrailing  ",
      "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
      "\xff\xfe broken \xc3 utf-8 \xe2\x82",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  const int64_t vocab = tokenizer.vocab_size();
  for (const char* text : kTexts) {
    const std::vector<gpu::TokenId> ids = tokenizer.encode(text);
    for (gpu::TokenId id : ids) {
      if (id < 0 || id >= vocab) std::abort();
    }
    (void)tokenizer.decode(ids);
    gpu::StreamDecoder stream(tokenizer);
    for (gpu::TokenId id : ids) (void)stream.push(id);
    (void)stream.finish();
  }
  (void)tokenizer.decode({-1, 0, vocab - 1, vocab, vocab + 7, INT64_MAX, INT64_MIN});
}

}  // namespace bouquet::fuzz
