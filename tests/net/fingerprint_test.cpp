// The model fingerprint covers every byte of every tensor (a copy with negated middle
// weights passed as the same model), and is read from its cache while the files are unchanged.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gpu/fingerprint.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"
#include "tests/net/support/net_support.h"

namespace bouquet::net {
namespace {

namespace fs = std::filesystem;

// Points the fingerprint cache at a fresh folder for one test, and back afterwards.
class Fingerprint : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* old = std::getenv("BOUQUET_CACHE_DIR")) old_cache_ = old;
    cache_ = testing::fresh_dir("fingerprint-cache");
    ::setenv("BOUQUET_CACHE_DIR", cache_.c_str(), 1);
  }
  void TearDown() override {
    if (old_cache_) {
      ::setenv("BOUQUET_CACHE_DIR", old_cache_->c_str(), 1);
    } else {
      ::unsetenv("BOUQUET_CACHE_DIR");
    }
  }
  fs::path cache_;
  std::optional<std::string> old_cache_;
};

// A copy of `model` whose tensor `name` has its middle values negated (first and last 64 bytes kept).
fs::path copy_with_negated_middle(const fs::path& model, const std::string& name, const std::string& to) {
  const fs::path copy = testing::fresh_dir(to);
  fs::copy(model, copy, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  std::vector<gpu::NamedTensor> tensors;
  {
    const gpu::SafetensorsFile file(copy / "model.safetensors");
    for (const auto& [tensor_name, info] : file.tensors()) tensors.push_back({tensor_name, file.read(tensor_name)});
  }
  for (auto& t : tensors) {
    if (t.name != name) continue;
    at::Tensor flat = t.tensor.clone().view(-1);
    const int64_t keep = 16;  // 64 bytes of f32 at each end
    EXPECT_GT(flat.numel(), 2 * keep + 1);
    flat.narrow(0, keep, flat.numel() - 2 * keep).neg_();
    t.tensor = flat.view(t.tensor.sizes());
  }
  gpu::write_safetensors(copy / "model.safetensors", tensors, gpu::DType::F32);
  return copy;
}

TEST_F(Fingerprint, ACopyWithOtherMiddleWeightsIsAnotherModel) {
  const fs::path model = testing::tiny_model("fingerprint-model", 2);
  const fs::path rogue = copy_with_negated_middle(model, "model.layers.1.mlp.down_proj.weight", "fingerprint-rogue");
  const fs::path same = copy_with_negated_middle(model, "no such tensor", "fingerprint-same");
  EXPECT_EQ(model_fingerprint(model), model_fingerprint(same)) << "an identical rewrite is the same model";
  EXPECT_NE(model_fingerprint(model), model_fingerprint(rogue));
  EXPECT_EQ(model_fingerprint(model).size(), 16u);
}

// config.json fields that change nothing a block computes (token ids, torch_dtype, formatting) do
// not make another model; a hyper-parameter that does (the rope base) does.
TEST_F(Fingerprint, OnlyHyperParametersOfTheConfigCount) {
  const fs::path model = testing::tiny_model("fingerprint-config", 2);
  const auto edited = [&](const std::string& to, const std::function<void(nlohmann::json&)>& edit) {
    const fs::path copy = testing::fresh_dir(to);
    fs::copy(model, copy, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    nlohmann::json config = nlohmann::json::parse(std::ifstream(copy / "config.json"));
    edit(config);
    std::ofstream(copy / "config.json", std::ios::trunc) << config.dump(4) << "\n";
    return copy;
  };
  const fs::path cosmetic = edited("fingerprint-cosmetic", [](nlohmann::json& c) {
    c["torch_dtype"] = "bfloat16";
    c["eos_token_id"] = 0;
    c["architectures"] = {"SomethingElse"};
  });
  const fs::path rope =
      edited("fingerprint-rope", [](nlohmann::json& c) { c["rope_theta"] = c.value("rope_theta", 10000.0) * 2; });
  EXPECT_EQ(model_fingerprint(cosmetic), model_fingerprint(model));
  EXPECT_NE(model_fingerprint(rope), model_fingerprint(model));
}

TEST_F(Fingerprint, ASecondLoadReusesTheCacheUntilAFileChanges) {
  const fs::path model = testing::tiny_model("fingerprint-cached", 2);
  const std::string first = model_fingerprint(model);
  const fs::path cache = fingerprint_cache_file(model);
  ASSERT_TRUE(fs::exists(cache)) << cache;
  // Plant another value in the cache: the next load returns it, so it did not re-read the weights.
  nlohmann::json entry = nlohmann::json::parse(std::ifstream(cache));
  EXPECT_EQ(entry["fingerprint"], first);
  entry["fingerprint"] = "00000000cafef00d";
  std::ofstream(cache) << entry.dump();
  EXPECT_EQ(model_fingerprint(model), "00000000cafef00d");
  // Rewriting the weights (same values, new file) invalidates the entry: computed again.
  const fs::path weights = model / "model.safetensors";
  std::vector<gpu::NamedTensor> tensors;
  {
    const gpu::SafetensorsFile file(weights);
    for (const auto& [name, info] : file.tensors()) tensors.push_back({name, file.read(name)});
  }
  gpu::write_safetensors(weights, tensors, gpu::DType::F32);
  EXPECT_EQ(model_fingerprint(model), first);
  // A corrupt cache file is recomputed, not trusted or fatal.
  std::ofstream(cache) << "{not json";
  EXPECT_EQ(model_fingerprint(model), first);
}

}  // namespace
}  // namespace bouquet::net
