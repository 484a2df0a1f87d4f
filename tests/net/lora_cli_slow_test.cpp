// LoRA adapters with the commands as a person runs them: `bouquet make-tiny-adapter`, `bouquet
// serve --adapters` on two processes, `bouquet generate --peers ... --adapter NAME --json` against
// `bouquet generate --local --adapter-dir DIR --json`, two clients with different adapters at
// once, an adapter no server holds, and adapters a server refuses to load.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <future>

#include "tests/net/support/net_support.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using testing::CommandResult;

namespace fs = std::filesystem;

class LoraCommands : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path root = testing::fresh_dir("lora-cli");
    model_ = new fs::path(root / "tiny");
    chat_ = new fs::path(root / "chat");
    code_ = new fs::path(root / "code");
    auto made = testing::run_bouquet(fmt::format("make-tiny-model --out {} --layers 6 --seed 3", model_->string()));
    ASSERT_EQ(made.status, 0) << made.output;
    made =
        testing::run_bouquet(fmt::format("make-tiny-adapter --model {} --out {} --r 4 --targets q_proj,v_proj --seed 1",
                                         model_->string(), chat_->string()));
    ASSERT_EQ(made.status, 0) << made.output;
    made = testing::run_bouquet(
        fmt::format("make-tiny-adapter --model {} --out {} --r 8 --alpha 8 --targets o_proj,down_proj --seed 2",
                    model_->string(), code_->string()));
    ASSERT_EQ(made.status, 0) << made.output;
    servers_ = new std::vector<ServerProcess>(
        testing::start_servers(*model_, {"0:3", "3:6"}, {"--adapters", chat_->string() + "," + code_->string()}));
  }
  static void TearDownTestSuite() {
    delete servers_;
    delete code_;
    delete chat_;
    delete model_;
  }
  static std::string generate(const std::string& how, const std::string& prompt) {
    return fmt::format("generate --model {} {} --prompt '{}' --max-new-tokens 16 --ignore-eos --json", model_->string(),
                       how, prompt);
  }
  static std::string peers() { return "--peers " + testing::join(testing::addresses(*servers_)); }
  static nlohmann::json ok_json(const CommandResult& r) {
    EXPECT_EQ(r.status, 0) << r.output;
    return r.status == 0 ? nlohmann::json::parse(r.output) : nlohmann::json::object();
  }

  static fs::path* model_;
  static fs::path* chat_;
  static fs::path* code_;
  static std::vector<ServerProcess>* servers_;
};

fs::path* LoraCommands::model_ = nullptr;
fs::path* LoraCommands::chat_ = nullptr;
fs::path* LoraCommands::code_ = nullptr;
std::vector<ServerProcess>* LoraCommands::servers_ = nullptr;

TEST_F(LoraCommands, ServedAdaptersGiveTheLocalIdsAndTwoClientsAtOnceTheirOwn) {
  const std::string prompt = "The quick brown fox";
  const auto base = ok_json(testing::run_bouquet(generate("--local", prompt)));
  const auto local_chat = ok_json(testing::run_bouquet(generate("--local --adapter-dir " + chat_->string(), prompt)));
  const auto local_code = ok_json(testing::run_bouquet(generate("--local --adapter-dir " + code_->string(), prompt)));
  EXPECT_NE(local_chat["ids"], base["ids"]);
  EXPECT_NE(local_code["ids"], base["ids"]);
  auto chat = std::async(std::launch::async,
                         [&] { return testing::run_bouquet(generate(peers() + " --adapter chat", prompt)); });
  auto code = std::async(std::launch::async,
                         [&] { return testing::run_bouquet(generate(peers() + " --adapter code", prompt)); });
  const auto swarm_chat = ok_json(chat.get());
  const auto swarm_code = ok_json(code.get());
  EXPECT_EQ(swarm_chat["ids"], local_chat["ids"]);
  EXPECT_EQ(swarm_chat["text"], local_chat["text"]);
  EXPECT_EQ(swarm_code["ids"], local_code["ids"]);
  EXPECT_EQ(ok_json(testing::run_bouquet(generate(peers(), prompt)))["ids"], base["ids"]);
}

TEST_F(LoraCommands, AnAdapterNoServerHoldsIsAClearErrorAndServingGoesOn) {
  const auto r = testing::run_bouquet(generate(peers() + " --adapter poetry", "hi"), /*want_stderr=*/true);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("adapter 'poetry'"), std::string::npos) << r.output;
  for (auto& server : *servers_) EXPECT_TRUE(server.running());
  EXPECT_EQ(testing::run_bouquet(generate(peers() + " --adapter chat", "hi")).status, 0);
}

TEST_F(LoraCommands, ServeRefusesAMismatchedAdapterNamingTheFile) {
  const fs::path other = testing::fresh_dir("lora-cli-other") / "small";
  ASSERT_EQ(testing::run_bouquet(
                fmt::format("make-tiny-model --out {} --layers 2 --hidden 32 --intermediate 88", other.string()))
                .status,
            0);
  const fs::path wrong = testing::fresh_dir("lora-cli-wrong") / "wrong";
  ASSERT_EQ(testing::run_bouquet(
                fmt::format("make-tiny-adapter --model {} --out {} --targets q_proj", other.string(), wrong.string()))
                .status,
            0);
  auto r = testing::run_bouquet(
      fmt::format("serve --model {} --blocks 0:2 --adapters {}", model_->string(), wrong.string()), true);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find((wrong / "adapter_config.json").string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("base model"), std::string::npos) << r.output;

  // Told it is for this model, the shapes still give it away.
  nlohmann::json config;
  std::ifstream(wrong / "adapter_config.json") >> config;
  config["base_model_name_or_path"] = model_->string();
  std::ofstream(wrong / "adapter_config.json") << config.dump(2);
  r = testing::run_bouquet(fmt::format("serve --model {} --blocks 0:2 --adapters {}", model_->string(), wrong.string()),
                           true);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find((wrong / "adapter_model.safetensors").string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("shape"), std::string::npos) << r.output;

  r = testing::run_bouquet(fmt::format("serve --model {} --blocks 0:2 --adapters {}", model_->string(),
                                       (testing::fresh_dir("lora-cli-empty")).string()),
                           true);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("adapter_config.json: missing"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace bouquet::net
