// Abuse load: one `bouquet serve` with a small cache, for a bounded time on loopback,
// serves 64 honest clients while 80 abusive ones send stalled half frames, garbage, opens they
// never use or close, huge claimed lengths, floods of opens and passes, and disconnect at every
// protocol step. The server must never die; its memory and open files stay bounded and come back
// near the baseline afterwards; every honest client gets the local output or a clear cache_full /
// timeout error. The counts are printed.
#include <ATen/ATen.h>
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "core/rng.h"
#include "gpu/fingerprint.h"
#include "gpu/span_runner.h"
#include "gpu/tensor_bridge.h"
#include "tests/net/support/net_support.h"
#include "tests/net/support/process_stats.h"
#include "tests/net/support/swarm_processes.h"

namespace bouquet::net {
namespace {

using Clock = std::chrono::steady_clock;
using testing::open_blocks_0_2;
using testing::open_fds;
using testing::RawClient;
using testing::rss_bytes;

constexpr int kHonestClients = 64;
constexpr int kAbusiveClients = 80;
constexpr double kLoadSeconds = 20;

// Tallies by name, shared by the client threads.
class Counts {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mutex_);
    ++counts_[what];
  }
  int get(const std::string& what) const {
    std::lock_guard lock(mutex_);
    auto it = counts_.find(what);
    return it == counts_.end() ? 0 : it->second;
  }
  std::string describe() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [what, n] : counts_) out += fmt::format("  {:<34} {}\n", what, n);
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, int> counts_;
};

class AbuseLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed(2025);
    model_ = testing::tiny_model("abuse-load", 2);
    model_id_ = model_fingerprint(model_);
    servers_ = testing::start_servers(model_, {"0:2"},
                                      {"--cache-tokens",
                                       "256",
                                       "--frame-timeout",
                                       "2",
                                       "--idle-timeout",
                                       "2",
                                       "--session-idle-timeout",
                                       "10",
                                       "--session-idle-contended",
                                       "1",
                                       "--client-cache-tokens-max",
                                       "128",
                                       "--client-opens-waiting-max",
                                       "2",
                                       "--client-tasks-queued-max",
                                       "4",
                                       "--request-tokens-max",
                                       "64",
                                       "--max-connections",
                                       "256"});
    address_ = servers_[0].address();
    // The honest clients' prompt and what the blocks make of it here.
    at::manual_seed(static_cast<int64_t>(seed_));
    hidden_ = at::randn({1, 6, 64});
    const gpu::SpanRunner blocks({model_, 0, -1, "f32", "cpu"});
    expected_ = blocks.forward(hidden_, {});
  }

  bool running() const { return Clock::now() < deadline_; }

  // One honest round: open (waiting for room), one step, compare, close.
  void honest_round(uint64_t session_id) {
    try {
      RawClient client(address_);
      client.send(open_blocks_0_2(model_id_, session_id, 16, 8));
      auto outcome = [&](const testing::ReadResult& r) -> std::optional<std::string> {
        if (std::holds_alternative<testing::TimedOut>(r)) return "honest: no reply (timeout)";
        const auto* m = std::get_if<core::Message>(&r);
        if (!m) return "honest: FAILED " + testing::describe(r);
        if (const auto* e = std::get_if<core::ErrorReply>(m)) {
          if (e->error.code == core::ErrorCode::cache_full || e->error.code == core::ErrorCode::timeout) {
            return fmt::format("honest: {}", core::to_string(e->error.code));
          }
          return "honest: FAILED " + e->error.to_string();
        }
        return std::nullopt;
      };
      const testing::ReadResult opened = client.read(20);
      if (auto o = outcome(opened)) return counts_.add(*o);
      if (!std::holds_alternative<core::SessionOpened>(std::get<core::Message>(opened))) {
        return counts_.add("honest: FAILED unexpected reply to open");
      }
      client.send(core::StepRequest{
          session_id, 1, 0, activation_from_tensor(hidden_, core::Compression::none), std::nullopt, {}});
      const testing::ReadResult stepped = client.read(20);
      if (auto o = outcome(stepped)) return counts_.add(*o);
      const auto* result = std::get_if<core::StepResult>(&std::get<core::Message>(stepped));
      if (!result) return counts_.add("honest: FAILED unexpected reply to step");
      const at::Tensor out = tensor_from_activation(result->hidden_states);
      counts_.add(at::allclose(out, expected_, 1e-4, 1e-4) ? "honest: local output" : "honest: FAILED wrong output");
      client.send(core::CloseSession{session_id});
    } catch (const std::exception& e) {
      counts_.add(fmt::format("honest: FAILED {}", e.what()));
    }
  }

  void honest(int index) {
    core::Rng rng(seed_ * 1000 + static_cast<uint64_t>(index));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng.below(3000)));
    for (uint64_t round = 1; running(); ++round) {
      honest_round(round);
      std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng.below(1500)));
    }
  }

  // Reads until the server closes the connection or the load ends.
  void drain(RawClient& client) {
    while (running()) {
      const testing::ReadResult r = client.read(0.5);
      if (std::holds_alternative<testing::Closed>(r)) return counts_.add("abuser: closed by the server");
    }
  }

  void abuse_once(int kind, core::Rng& rng, uint64_t& next_id) {
    RawClient client(address_);
    switch (kind) {
      case 0: {  // a half frame, then nothing
        std::vector<uint8_t> bytes = encode_frame(core::InfoRequest{1});
        bytes.resize(1 + rng.below(bytes.size() - 1));
        client.send_bytes(bytes);
        counts_.add("abuser: stalled half frame");
        return drain(client);
      }
      case 1: {  // garbage
        std::vector<uint8_t> bytes(1 + rng.below(4096));
        for (auto& b : bytes) b = static_cast<uint8_t>(rng.below(256));
        if (rng.below(2)) bytes[0] = 'B', bytes[1] = 'Q';
        client.send_bytes(bytes);
        counts_.add("abuser: garbage");
        return drain(client);
      }
      case 2: {  // opens that are never used nor closed
        for (int i = 0; i < 4; ++i) client.send(open_blocks_0_2(model_id_, next_id++, 40 + rng.below(60), 5));
        counts_.add("abuser: opens never closed");
        return drain(client);
      }
      case 3: {  // a huge claimed length: the largest allowed and stalled, or beyond the limit
        std::vector<uint8_t> bytes = frame_header(rng.below(2) ? kDefaultMaxFrameBytes : uint64_t{1} << 62);
        bytes.resize(bytes.size() + rng.below(2000), 0x33);
        client.send_bytes(bytes);
        counts_.add("abuser: huge claimed length");
        return drain(client);
      }
      case 4: {  // floods: opens beyond the waiting quota, passes beyond the token cap and queue quota
        for (int i = 0; i < 6; ++i) client.send(open_blocks_0_2(model_id_, next_id++, 100, 5));
        for (int i = 0; i < 12; ++i) {
          core::ForwardRequest forward;
          forward.request_id = next_id++;
          forward.model_id = model_id_;
          forward.span = {0, 2};
          const int64_t tokens = rng.below(2) ? 8 : 200;
          forward.hidden_states = activation_from_tensor(at::zeros({1, tokens, 64}), core::Compression::none);
          client.send(forward);
        }
        counts_.add("abuser: floods of opens and passes");
        // Leaves without reading (the server's replies meet a closed socket).
        std::this_thread::sleep_for(std::chrono::milliseconds(rng.below(500)));
        return;
      }
      default: {  // disconnects at one protocol step
        const uint64_t id = next_id++;
        switch (rng.below(4)) {
          case 0:
            break;  // right after connecting
          case 1:
            client.send(open_blocks_0_2(model_id_, id, 32, 5));
            break;
          case 2:
            client.send(open_blocks_0_2(model_id_, id, 32, 5));
            client.read(2);
            client.send(core::StepRequest{
                id, 1, 0, activation_from_tensor(hidden_, core::Compression::none), std::nullopt, {}});
            break;
          case 3: {
            std::vector<uint8_t> bytes = encode_frame(open_blocks_0_2(model_id_, id, 32, 5));
            bytes.resize(bytes.size() / 2);
            client.send_bytes(bytes);
            break;
          }
        }
        counts_.add("abuser: sudden disconnect");
        return;
      }
    }
  }

  void abuser(int index) {
    core::Rng rng(seed_ * 7919 + static_cast<uint64_t>(index));
    uint64_t next_id = 1;
    while (running()) {
      try {
        abuse_once(index % 6, rng, next_id);
      } catch (const std::exception&) {
        counts_.add("abuser: refused or reset");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

  uint64_t seed_ = 0;
  std::filesystem::path model_;
  std::string model_id_;
  std::vector<ServerProcess> servers_;
  std::string address_;
  at::Tensor hidden_, expected_;
  Clock::time_point deadline_;
  Counts counts_;
};

TEST_F(AbuseLoad, ServerSurvivesStaysBoundedAndServesHonestClients) {
  const pid_t pid = servers_[0].pid();
  {
    RawClient probe(address_);
    probe.call<core::InfoReply>(core::InfoRequest{1});
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const uint64_t rss_before = rss_bytes(pid);
  const size_t fds_before = open_fds(pid);

  deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kLoadSeconds));
  std::atomic<bool> sampling = true;
  uint64_t rss_peak = rss_before;
  size_t fds_peak = fds_before;
  std::thread monitor([&] {
    while (sampling) {
      rss_peak = std::max(rss_peak, rss_bytes(pid));
      fds_peak = std::max(fds_peak, open_fds(pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  std::vector<std::thread> clients;
  for (int i = 0; i < kHonestClients; ++i) clients.emplace_back([this, i] { honest(i); });
  for (int i = 0; i < kAbusiveClients; ++i) clients.emplace_back([this, i] { abuser(i); });
  for (auto& t : clients) t.join();
  sampling = false;
  monitor.join();

  ASSERT_TRUE(servers_[0].running()) << "the server died";
  // Every connection is closed on the client side; the server closes its ends as it notices.
  size_t fds_after = open_fds(pid);
  for (int i = 0; i < 100 && fds_after > fds_before + 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fds_after = open_fds(pid);
  }
  const uint64_t rss_after = rss_bytes(pid);
  std::cout << fmt::format(
      "seed {}: {} honest and {} abusive clients for {} s\n{}server RSS {:.1f} MB before, {:.1f} MB peak, {:.1f} MB "
      "after; open fds {} before, {} peak, {} after\n",
      seed_, kHonestClients, kAbusiveClients, kLoadSeconds, counts_.describe(), rss_before / 1e6, rss_peak / 1e6,
      rss_after / 1e6, fds_before, fds_peak, fds_after);

  int failed = 0;
  const std::string report = counts_.describe();
  for (size_t at = report.find("honest: FAILED"); at != std::string::npos; at = report.find("honest: FAILED", at + 1)) {
    ++failed;
  }
  EXPECT_EQ(failed, 0) << report;
  EXPECT_GE(counts_.get("honest: local output"), kHonestClients) << "most honest rounds should be served";
  EXPECT_LT(rss_peak, rss_before + uint64_t{500} * 1000 * 1000);
  EXPECT_LT(rss_after, rss_before + uint64_t{150} * 1000 * 1000);
  EXPECT_LE(fds_peak, fds_before + 256 + 16);  // --max-connections, and the refused ones being closed
  EXPECT_LE(fds_after, fds_before + 2);
  // Still serving after all that.
  RawClient after(address_);
  EXPECT_EQ(after.call<core::InfoReply>(core::InfoRequest{2}).cache_tokens_free, 256u);
}

}  // namespace
}  // namespace bouquet::net
