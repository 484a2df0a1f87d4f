// A model folder whose files are corrupt or disagree with config.json gets one clear
// ModelFileError naming the file and the tensor (or field) — never a crash or a wrong answer.
#include "tests/gpu/support/model_files.h"
#include "gpu/checkpoint.h"
#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/model_config.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"
#include "gpu/span_runner.h"
#include "gpu/tiny_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>
#include <sstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string load_error(const fs::path& dir, int64_t first = 0, int64_t end = -1) {
  try {
    SpanRunner span({dir, first, end, "f32", "cpu"});
  } catch (const ModelFileError& e) {
    return e.what();
  }
  return "no error";
}

std::string head_error(const fs::path& dir) {
  try {
    ClientHead head({dir, "f32", "cpu"});
  } catch (const ModelFileError& e) {
    return e.what();
  }
  return "no error";
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void write_json(const fs::path& path, const nlohmann::json& json) { std::ofstream(path) << json.dump(2); }

// Rewrites model.safetensors with `edit` applied to its tensors (read back as f32).
template <typename Edit>
void rewrite_weights(const fs::path& dir, Edit edit) {
  std::vector<NamedTensor> tensors;
  {
    const SafetensorsFile file(dir / "model.safetensors");
    for (const auto& [name, info] : file.tensors()) tensors.push_back({name, file.read(name)});
  }
  edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors, DType::F32);
}

class ModelFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    write_tiny_checkpoint(testing::small_tiny(dir_));
  }
  fs::path dir_;
  fs::path weights() const { return dir_ / "model.safetensors"; }
};

TEST_F(ModelFiles, MissingTensor) {
  rewrite_weights(dir_, [](std::vector<NamedTensor>& t) {
    std::erase_if(t, [](const NamedTensor& n) { return n.name == "model.layers.2.mlp.up_proj.weight"; });
  });
  EXPECT_THAT(load_error(dir_),
              AllOf(HasSubstr(weights().string()), HasSubstr("missing tensor 'model.layers.2.mlp.up_proj.weight'")));
  EXPECT_EQ(load_error(dir_, 0, 2), "no error") << "blocks 0-1 do not need the missing tensor";
}

TEST_F(ModelFiles, ShapeDisagreeingWithConfig) {
  auto config = read_json(dir_ / "config.json");
  config["intermediate_size"] = 100;
  write_json(dir_ / "config.json", config);
  EXPECT_THAT(load_error(dir_), AllOf(HasSubstr(weights().string()), HasSubstr("'model.layers.0.mlp.gate_proj.weight'"),
                                      HasSubstr("[176, 64]"), HasSubstr("config.json implies [100, 64]")));
}

TEST_F(ModelFiles, DtypeDisagreeingWithConfig) {
  auto config = read_json(dir_ / "config.json");
  config["torch_dtype"] = "bfloat16";
  write_json(dir_ / "config.json", config);
  EXPECT_THAT(head_error(dir_),
              AllOf(HasSubstr(weights().string()), HasSubstr("'model.embed_tokens.weight' has dtype F32"),
                    HasSubstr("torch_dtype bfloat16")));
}

TEST_F(ModelFiles, IntegerWeight) {
  rewrite_weights(dir_, [](std::vector<NamedTensor>&) {});
  // Hand-patch one tensor's dtype in the header to I32 (same byte size as F32).
  std::fstream file(weights(), std::ios::in | std::ios::out | std::ios::binary);
  std::stringstream all;
  all << file.rdbuf();
  std::string bytes = all.str();
  const size_t at = bytes.find("\"model.norm.weight\":");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(bytes.find("F32", at), 3, "I32");
  file.seekp(0);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file.close();
  EXPECT_THAT(head_error(dir_), AllOf(HasSubstr(weights().string()), HasSubstr("'model.norm.weight' has dtype I32")));
}

// NaN or infinite weights (a poisoned or corrupt checkpoint) are refused at load by name, in a
// span and in the client's head, instead of turning every later answer into NaN.
TEST_F(ModelFiles, NanOrInfiniteWeightsAreRefusedNamingTheTensor) {
  rewrite_weights(dir_, [](std::vector<NamedTensor>& t) {
    for (auto& n : t) {
      if (n.name == "model.layers.1.self_attn.q_proj.weight") {
        n.tensor = n.tensor.clone();
        n.tensor.view(-1)[5] = std::numeric_limits<float>::quiet_NaN();
        n.tensor.view(-1)[7] = std::numeric_limits<float>::infinity();
      }
      if (n.name == "model.norm.weight") {
        n.tensor = n.tensor.clone();
        n.tensor.view(-1)[0] = -std::numeric_limits<float>::infinity();
      }
    }
  });
  EXPECT_THAT(load_error(dir_), AllOf(HasSubstr(weights().string()),
                                      HasSubstr("tensor 'model.layers.1.self_attn.q_proj.weight' holds 2 NaN or "
                                                "infinite values")));
  EXPECT_EQ(load_error(dir_, 2, 4), "no error") << "blocks 2-3 hold no bad value";
  EXPECT_THAT(head_error(dir_), AllOf(HasSubstr(weights().string()),
                                      HasSubstr("tensor 'model.norm.weight' holds 1 NaN or infinite values")));
}

TEST_F(ModelFiles, WeightsOverflowingTheComputeDtypeAreRefused) {
  // 1e6 is a finite float32 but infinite in float16: a server computing in f16 refuses it.
  rewrite_weights(dir_, [](std::vector<NamedTensor>& t) {
    for (auto& n : t) {
      if (n.name == "model.layers.0.mlp.down_proj.weight") {
        n.tensor = n.tensor.clone();
        n.tensor.view(-1)[0] = 1e6f;
      }
    }
  });
  EXPECT_EQ(load_error(dir_), "no error") << "finite in f32";
  // This CPU libtorch cannot compute in f16 (SpanRunner refuses it), but a CUDA one can: load the
  // block as such a server would.
  ComputeOptions f16;
  f16.dtype = at::kHalf;
  std::string error = "no error";
  try {
    load_block(load_model_config(dir_), Checkpoint(dir_), 0, f16);
  } catch (const ModelFileError& e) {
    error = e.what();
  }
  EXPECT_THAT(error, AllOf(HasSubstr("tensor 'model.layers.0.mlp.down_proj.weight' holds 1 NaN or infinite"),
                           HasSubstr("Half")));
}

TEST_F(ModelFiles, ConfigNotJson) {
  std::ofstream(dir_ / "config.json") << "{\"model_type\": \"llama\", \"hidden_size\": 64,";
  EXPECT_THAT(load_error(dir_), AllOf(HasSubstr((dir_ / "config.json").string()), HasSubstr("not valid JSON")));
}

TEST_F(ModelFiles, ConfigMissingField) {
  auto config = read_json(dir_ / "config.json");
  config.erase("num_hidden_layers");
  write_json(dir_ / "config.json", config);
  EXPECT_THAT(head_error(dir_),
              AllOf(HasSubstr((dir_ / "config.json").string()), HasSubstr("'num_hidden_layers' is missing")));
}

TEST_F(ModelFiles, TruncatedWeights) {
  fs::resize_file(weights(), fs::file_size(weights()) - 100);
  EXPECT_THAT(load_error(dir_),
              AllOf(HasSubstr(weights().string()), HasSubstr("truncated"), HasSubstr("'model.norm.weight'")));
}

TEST_F(ModelFiles, NoWeightsAtAll) {
  fs::remove(weights());
  EXPECT_THAT(load_error(dir_), AllOf(HasSubstr(dir_.string()), HasSubstr("no model.safetensors")));
}

TEST(ShardedModelFiles, IndexWithoutTheTensorAndShardWithoutIt) {
  const fs::path dir = testing::fresh_dir("sharded_errors");
  TinyModelConfig tiny = testing::small_tiny(dir);
  tiny.shards = 2;
  write_tiny_checkpoint(tiny);
  const fs::path index_path = dir / "model.safetensors.index.json";
  auto index = read_json(index_path);
  const std::string moved = "model.layers.1.self_attn.k_proj.weight";
  const std::string home = index["weight_map"][moved];
  index["weight_map"][moved] = home == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                                          : "model-00001-of-00002.safetensors";
  write_json(index_path, index);
  EXPECT_THAT(load_error(dir), AllOf(HasSubstr((dir / index["weight_map"][moved].get<std::string>()).string()),
                                     HasSubstr("missing tensor '" + moved + "'")));
  index["weight_map"].erase(moved);
  write_json(index_path, index);
  EXPECT_THAT(load_error(dir), AllOf(HasSubstr(index_path.string()), HasSubstr("missing tensor '" + moved + "'")));
  std::ofstream(index_path) << "[1, 2";
  EXPECT_THAT(load_error(dir), AllOf(HasSubstr(index_path.string()), HasSubstr("not valid JSON")));
}

}  // namespace
}  // namespace bouquet::gpu
