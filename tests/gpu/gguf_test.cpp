// The GGUF reader against llama.cpp's own gguf-py (PyPI `gguf`, in a venv scripts/gguf-venv.sh
// makes): dequantization of every type Bouquet reads, metadata of every value type, a converted
// Llama computing what its Hugging Face folder computes, and corrupt files refused by name.
#include "gpu/gguf.h"
#include "gpu/checkpoint.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/fingerprint.h"
#include "gpu/gguf_checkpoint.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"
#include "tests/gpu/support/model_files.h"
#include "tokenizer/tokenizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using testing::fresh_dir;
using ::testing::HasSubstr;
using testing::run_command;

const fs::path kSource = BOUQUET_SOURCE_DIR;

// The venv's python, or "" with `why` set when it cannot be had here.
std::string gguf_python(std::string& why) {
  int status = 0;
  std::string out = run_command((kSource / "scripts/gguf-venv.sh").string() + " 2>&1", &status);
  if (status != 0) {
    why = "the gguf Python package cannot be installed here: " + out;
    return "";
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.substr(out.rfind('\n') + 1);
}

void make(const std::string& python, const std::string& args) {
  int status = 0;
  const std::string cmd =
      fmt::format("{} {} {} 2>&1", python, (kSource / "tests/reference/gguf_make.py").string(), args);
  const std::string out = run_command(cmd, &status);
  ASSERT_EQ(status, 0) << cmd << "\n" << out;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const fs::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

#define NEED_GGUF_PYTHON(python)               \
  std::string why;                             \
  const std::string python = gguf_python(why); \
  if (python.empty()) GTEST_SKIP() << why

TEST(Gguf, DequantizesEveryTypeAsGgufPyDoes) {
  NEED_GGUF_PYTHON(python);
  const fs::path dir = fresh_dir("gguf_quant");
  ASSERT_NO_FATAL_FAILURE(
      make(python, fmt::format("quant {} {}", (dir / "q.gguf").string(), (dir / "q.f32").string())));
  const GgufFile file(dir / "q.gguf");
  EXPECT_EQ(file.bytes_read(), 0u) << "opening reads the header only";
  const std::string expected = read_all(dir / "q.f32");
  const std::vector<std::string> types = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"};
  ASSERT_EQ(expected.size(), types.size() * 3 * 512 * 4);
  uint64_t bytes = 0;
  for (size_t i = 0; i < types.size(); ++i) {
    SCOPED_TRACE(types[i]);
    const GgufTensor* info = file.find("t_" + types[i]);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(ggml_type_name(info->type), types[i]);
    EXPECT_EQ(info->shape(), (std::vector<int64_t>{3, 512}));
    const at::Tensor got = file.read_f32("t_" + types[i]);
    bytes += info->size_bytes;
    EXPECT_EQ(file.bytes_read(), bytes) << "reads exactly the tensor's stored bytes";
    const float* want = reinterpret_cast<const float*>(expected.data()) + i * 3 * 512;
    const float* have = got.data_ptr<float>();
    int mismatches = 0;
    for (int j = 0; j < 3 * 512; ++j) {
      if (std::abs(have[j] - want[j]) > 1e-6f * std::max(1.0f, std::abs(want[j]))) {
        if (++mismatches <= 3) ADD_FAILURE() << "value " << j << ": " << have[j] << " vs gguf-py " << want[j];
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST(Gguf, ReadsMetadataOfEveryValueType) {
  NEED_GGUF_PYTHON(python);
  const fs::path dir = fresh_dir("gguf_meta");
  ASSERT_NO_FATAL_FAILURE(
      make(python, fmt::format("quant {} {}", (dir / "q.gguf").string(), (dir / "q.f32").string())));
  const GgufFile file(dir / "q.gguf");
  const auto& m = file.metadata();
  EXPECT_EQ(m.at("general.architecture"), "llama");
  EXPECT_EQ(file.integer("t.u8"), 200);
  EXPECT_EQ(file.integer("t.i8"), -100);
  EXPECT_EQ(file.integer("t.u16"), 60000);
  EXPECT_EQ(file.integer("t.i16"), -30000);
  EXPECT_EQ(file.integer("t.u32"), 4000000000);
  EXPECT_EQ(file.integer("t.i32"), -2000000000);
  EXPECT_EQ(m.at("t.u64").get<uint64_t>(), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(file.integer("t.i64"), -(int64_t{1} << 62));
  EXPECT_DOUBLE_EQ(file.number("t.f32"), 0.25);
  EXPECT_DOUBLE_EQ(file.number("t.f64"), -1.5e300);
  EXPECT_EQ(m.at("t.bool"), true);
  EXPECT_EQ(file.string("t.string"), "h\xc3\xa9llo");
  EXPECT_EQ(m.at("t.ints"), nlohmann::json({1, -2, 3}));
  EXPECT_EQ(m.at("t.strings"), nlohmann::json({"a", "bc", ""}));
  EXPECT_THAT([&] { file.integer("t.u64"); }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("'t.u64'")));
  EXPECT_THAT([&] { file.integer("t.string"); }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("not an integer")));
  EXPECT_THAT([&] { file.string("absent.key"); },
              ::testing::ThrowsMessage<ModelFileError>(HasSubstr("'absent.key' is missing")));
}

// Every prefix of a valid file is refused with a ModelFileError naming the file, at open or at the
// first read of a tensor that is cut: never a crash, a hang or a huge allocation.
TEST(Gguf, EveryTruncationIsRefusedByName) {
  NEED_GGUF_PYTHON(python);
  const fs::path dir = fresh_dir("gguf_cut");
  ASSERT_NO_FATAL_FAILURE(
      make(python, fmt::format("quant {} {}", (dir / "q.gguf").string(), (dir / "q.f32").string())));
  const std::string bytes = read_all(dir / "q.gguf");
  const fs::path cut = dir / "cut.gguf";
  for (size_t length = 0; length < bytes.size(); length += (length < 1200 ? 7 : 997)) {
    SCOPED_TRACE(length);
    write_all(cut, std::string_view(bytes).substr(0, length));
    try {
      const GgufFile file(cut);
      for (const auto& [name, info] : file.tensors()) file.read_f32(name);
      ADD_FAILURE() << "a file cut to " << length << " of " << bytes.size() << " bytes was read whole";
    } catch (const ModelFileError& e) {
      EXPECT_THAT(e.what(), HasSubstr(cut.string()));
    }
  }
}

// A GGUF by hand: header, one string key, one tensor info of `type` (a 32 x 1 tensor at offset 0).
std::string tiny_gguf(uint32_t type, uint64_t tensor_count = 1, uint32_t version = 3) {
  std::string s = "GGUF";
  const auto put = [&](auto v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); };
  const auto put_string = [&](std::string_view text) {
    put(uint64_t{text.size()});
    s += text;
  };
  put(version);
  put(tensor_count);
  put(uint64_t{1});
  put_string("general.architecture");
  put(uint32_t{8});
  put_string("llama");
  put_string("weights");
  put(uint32_t{1});
  put(uint64_t{32});
  put(type);
  put(uint64_t{0});
  s.append((32 - s.size() % 32) % 32, '\0');
  s.append(32 * 4, '\0');
  return s;
}

TEST(Gguf, UnknownTypeBadMagicAndHugeCountsAreRefusedByName) {
  const fs::path dir = fresh_dir("gguf_bad");
  const fs::path path = dir / "bad.gguf";
  write_all(path, tiny_gguf(0));
  EXPECT_EQ(GgufFile(path).read_f32("weights").numel(), 32);

  write_all(path, tiny_gguf(10));  // Q2_K
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(::testing::AllOf(
                                           HasSubstr(path.string()), HasSubstr("tensor 'weights' has type Q2_K"))));
  write_all(path, tiny_gguf(999));
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("type 999")));
  write_all(path, tiny_gguf(0, uint64_t{1} << 60));
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("tensor count")));
  write_all(path, tiny_gguf(0, 1, 1));
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("version 1")));
  std::string bad_magic = tiny_gguf(0);
  bad_magic[0] = 'X';
  write_all(path, bad_magic);
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("not a GGUF file")));
  // A string whose length runs past the file.
  std::string long_key = tiny_gguf(0);
  long_key[24 + 7] = '\x7f';
  write_all(path, long_key);
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(HasSubstr("past the end")));
  // Random bytes after a valid magic and version: refused, never a crash.
  std::mt19937_64 rng(20261206);
  std::printf("seed 20261206\n");
  for (int i = 0; i < 200; ++i) {
    std::string noise = tiny_gguf(0);
    for (int k = 0; k < 4; ++k) noise[8 + rng() % (noise.size() - 8)] = static_cast<char>(rng());
    write_all(path, noise);
    try {
      const GgufFile file(path);
      for (const auto& [name, info] : file.tensors()) file.read_f32(name);
    } catch (const ModelFileError&) {
    }
  }
}

// 2^24 + 1 one-byte values would be ~270 MB as JSON: refused by count, whatever the file's size.
TEST(Gguf, HugeMetadataArrayIsRefusedBeforeExhaustingMemory) {
  const fs::path path = fresh_dir("gguf_huge") / "huge.gguf";
  std::string s = "GGUF";
  const auto put = [&](auto v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(uint32_t{3});
  put(uint64_t{0});
  put(uint64_t{1});
  put(uint64_t{4});
  s += "huge";
  put(uint32_t{9});  // array
  put(uint32_t{0});  // of u8
  const uint64_t count = (uint64_t{1} << 24) + 1;
  put(count);
  s.append(count, '\x01');
  write_all(path, s);
  EXPECT_THAT([&] { GgufFile{path}; }, ::testing::ThrowsMessage<ModelFileError>(::testing::AllOf(
                                           HasSubstr("metadata 'huge'"), HasSubstr("16777217 values"))));
}

// A tiny Llama folder converted as llama.cpp converts (names, permuted Q/K rows, F32) computes
// exactly what the folder computes, and a span reads only its blocks' tensors.
TEST(Gguf, ConvertedLlamaComputesWhatItsFolderComputes) {
  NEED_GGUF_PYTHON(python);
  const fs::path dir = fresh_dir("gguf_llama");
  write_tiny_checkpoint(testing::small_tiny(dir / "hf"));
  const fs::path gguf = dir / "tiny.gguf";
  ASSERT_NO_FATAL_FAILURE(make(python, fmt::format("llama {} {} F32", (dir / "hf").string(), gguf.string())));

  const ModelConfig a = load_model_config(dir / "hf");
  const ModelConfig b = load_model_config(gguf);
  EXPECT_EQ(b.family, "llama");
  EXPECT_EQ(b.num_layers, a.num_layers);
  EXPECT_EQ(b.num_kv_heads, a.num_kv_heads);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
  // Same weights, same model: a swarm of folder servers serves clients of the GGUF and back.
  EXPECT_EQ(net::model_fingerprint(gguf), net::model_fingerprint(dir / "hf"));
  EXPECT_NE(net::legacy_model_fingerprint(gguf), net::legacy_model_fingerprint(dir / "hf"))
      << "version 1 told them apart";

  const std::vector<TokenId> prompt = {5, 17, 300, 42, 9};
  const auto folder_ids = testing::engine_greedy_ids(dir / "hf", prompt, 8);
  EXPECT_EQ(testing::engine_greedy_ids(gguf, prompt, 8), folder_ids);
  EXPECT_EQ(testing::engine_greedy_ids(gguf, prompt, 8, "f32", 2), folder_ids) << "two spans";

  const ClientHead head_a({dir / "hf", "f32", "cpu"}), head_b({gguf, "f32", "cpu"});
  const SpanRunner span_a({dir / "hf", 0, -1, "f32", "cpu"}), span_b({gguf, 0, -1, "f32", "cpu"});
  at::NoGradGuard no_grad;
  const auto la = head_a.last_logits(span_a.forward(head_a.embed(prompt)));
  const auto lb = head_b.last_logits(span_b.forward(head_b.embed(prompt)));
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) ASSERT_NEAR(la[i], lb[i], 1e-4) << "logit " << i;

  const SpanRunner one({gguf, 1, 2, "f32", "cpu"});
  const GgufFile file(gguf);
  uint64_t block1 = 0;
  for (const auto& [name, t] : file.tensors()) {
    if (name.starts_with("blk.1.")) block1 += t.size_bytes;
  }
  EXPECT_EQ(one.checkpoint_bytes_read(), block1) << "a span of block 1 reads block 1's tensors only";
}

// A SentencePiece tokenizer.model carried as tokenizer.ggml.* (pieces, scores, types) encodes and
// decodes as the file itself does.
TEST(Gguf, SentencePieceVocabularyEncodesAsItsTokenizerModel) {
  NEED_GGUF_PYTHON(python);
  const fs::path dir = fresh_dir("gguf_spm");
  write_tiny_checkpoint(testing::small_tiny(dir / "hf"));
  // Normalized as Llama 2's (spaces kept): GGUF has no field for SentencePiece's other options.
  train_sentencepiece(tiny_corpus(), 512, dir / "hf");
  const fs::path gguf = dir / "tiny.gguf";
  ASSERT_NO_FATAL_FAILURE(make(python, fmt::format("llama {} {} F32", (dir / "hf").string(), gguf.string())));
  const auto want = load_tokenizer(dir / "hf");
  const auto have = load_model_tokenizer(gguf);
  EXPECT_EQ(have->vocab_size(), want->vocab_size());
  EXPECT_EQ(have->bos_id, want->bos_id);
  EXPECT_EQ(have->eos_id, want->eos_id);
  EXPECT_EQ(have->add_bos, want->add_bos);
  for (const std::string text : {"Once upon a time, there was a little fox.", "  two  spaces\nand a newline",
                                 "digits 12345 and \xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80", ""}) {
    SCOPED_TRACE(text);
    const auto ids = want->encode(text);
    EXPECT_EQ(have->encode(text), ids);
    EXPECT_EQ(have->decode(ids), want->decode(ids));
  }
}

TEST(Gguf, Q8ConvertedLlamaStaysCloseToItsFolder) {
  NEED_GGUF_PYTHON(python);
  const fs::path dir = fresh_dir("gguf_llama_q8");
  write_tiny_checkpoint(testing::small_tiny(dir / "hf"));
  const fs::path gguf = dir / "tiny.gguf";
  ASSERT_NO_FATAL_FAILURE(make(python, fmt::format("llama {} {} Q8_0", (dir / "hf").string(), gguf.string())));
  EXPECT_NE(net::model_fingerprint(gguf), net::model_fingerprint(dir / "hf")) << "8-bit weights are other weights";
  const std::vector<TokenId> prompt = {5, 17, 300, 42, 9};
  const ClientHead head_a({dir / "hf", "f32", "cpu"}), head_b({gguf, "f32", "cpu"});
  const SpanRunner span_a({dir / "hf", 0, -1, "f32", "cpu"}), span_b({gguf, 0, -1, "f32", "cpu"});
  at::NoGradGuard no_grad;
  const auto la = head_a.last_logits(span_a.forward(head_a.embed(prompt)));
  const auto lb = head_b.last_logits(span_b.forward(head_b.embed(prompt)));
  double worst = 0, scale = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    worst = std::max<double>(worst, std::abs(la[i] - lb[i]));
    scale = std::max<double>(scale, std::abs(la[i]));
  }
  EXPECT_LT(worst, 0.05 * scale) << "8-bit weights move logits by a few percent at most";
  EXPECT_GT(worst, 0.0) << "the Q8_0 file is really quantized";
}

TEST(Gguf, ArchitectureNotServedIsRefusedByName) {
  const fs::path dir = fresh_dir("gguf_arch");
  std::string bytes = tiny_gguf(0);
  const size_t at = bytes.find("llama");
  bytes.replace(at, 5, "gemma");
  write_all(dir / "m.gguf", bytes);
  EXPECT_THAT([&] { load_model_config(dir / "m.gguf"); },
              ::testing::ThrowsMessage<ModelFileError>(::testing::AllOf(HasSubstr("m.gguf"), HasSubstr("'gemma'"))));
}

}  // namespace
}  // namespace bouquet::gpu
