// train_sentencepiece: runs Debian's `spm_train` in a child process. Linking libsentencepiece's
// trainer is not an option (its protobuf clashes with libtorch's), and a child process also keeps
// its threads, logging and exit paths out of ours.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

extern char** environ;

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;

// A private temporary folder, removed when the scope ends.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "bouquet-spm-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error(fmt::format("cannot create a temporary folder: {}", std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// What spm_train said last, minus its INFO chatter: the lines that explain a failure.
std::string log_tail(const std::string& log, size_t max_lines) {
  std::vector<std::string_view> kept;
  std::string_view rest = log;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (!line.empty() && line.find("LOG(INFO)") == std::string_view::npos) kept.push_back(line);
  }
  std::string out;
  for (size_t i = kept.size() > max_lines ? kept.size() - max_lines : 0; i < kept.size(); ++i)
    out.append(out.empty() ? "" : "\n").append(kept[i]);
  return out;
}

// Runs `args` (args[0] looked up on PATH) in `cwd` with stdout and stderr sent to `log`; returns
// the exit status, or throws when the program cannot be started.
int run_program(const std::vector<std::string>& args, const fs::path& cwd, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawn_error = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error == ENOENT)
    throw std::runtime_error(fmt::format("{} not found on PATH: install Debian's `sentencepiece` package", args[0]));
  if (spawn_error != 0) throw std::runtime_error(fmt::format("cannot run {}: {}", args[0], std::strerror(spawn_error)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(fmt::format("waiting for {}: {}", args[0], std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

void train_sentencepiece(std::string_view corpus, int64_t vocab_size, const fs::path& out_dir) {
  if (vocab_size <= 0 || vocab_size > (1 << 24))
    throw std::runtime_error(fmt::format("train_sentencepiece: vocab_size {} is out of range", vocab_size));
  TempDir work;
  {
    std::ofstream out(work.path() / "corpus.txt", std::ios::binary);
    out.write(corpus.data(), static_cast<std::streamsize>(corpus.size()));
    if (!out) throw std::runtime_error(fmt::format("cannot write {}", (work.path() / "corpus.txt").string()));
  }
  // Relative paths, run inside the temporary folder: spm_train records them in the model, and the
  // same inputs must give the same bytes.
  const std::vector<std::string> args = {
      "spm_train",
      "--input=corpus.txt",
      "--model_prefix=tokenizer",
      "--model_type=bpe",
      fmt::format("--vocab_size={}", vocab_size),
      "--byte_fallback=true",
      "--unk_id=0",
      "--bos_id=1",
      "--eos_id=2",
      "--pad_id=-1",
      "--normalization_rule_name=identity",
      "--add_dummy_prefix=true",
      "--remove_extra_whitespaces=false",
      "--split_digits=true",
      "--allow_whitespace_only_pieces=true",
      "--character_coverage=1.0",
      "--max_sentence_length=65536",
      "--hard_vocab_limit=true",
      "--num_threads=1",
  };
  const fs::path log = work.path() / "spm_train.log";
  const int status = run_program(args, work.path(), log);
  const fs::path model_file = work.path() / "tokenizer.model";
  if (status != 0 || !fs::exists(model_file))
    throw std::runtime_error(fmt::format("spm_train failed (exit status {}) training a {}-piece tokenizer:\n{}", status,
                                         vocab_size, log_tail(read_file(log), 3)));
  const std::string bytes = read_file(model_file);
  const SentencePieceModel model = parse_sentencepiece_model(bytes, model_file.string());
  if (static_cast<int64_t>(model.pieces.size()) != vocab_size)
    throw std::runtime_error(
        fmt::format("spm_train made {} pieces, not the {} asked for: the corpus is too small for that vocabulary",
                    model.pieces.size(), vocab_size));
  fs::create_directories(out_dir);
  const fs::path target = out_dir / "tokenizer.model";
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", target.string()));
}

}  // namespace bouquet::gpu
