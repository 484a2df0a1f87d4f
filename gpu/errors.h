// Typed errors of the model engine. Both are expected failures, surfaced to the user as one line:
// ModelFileError when a model folder's files are missing, corrupt or disagree with config.json
// (the message names the file and, where one is involved, the tensor or field); InputError when a
// caller hands the engine something it cannot run (a wrong hidden size, an unknown session, a
// position past a session's max length) — the message names what was wrong and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace bouquet::gpu {

class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace bouquet::gpu
