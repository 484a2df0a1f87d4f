// The OpenDHT directory with three in-process nodes on 127.0.0.1: what one announces another
// finds; expired, malformed, foreign and stale records are skipped with a log line.
#include <gtest/gtest.h>

#include <opendht.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/dht/dht_directory.h"
#include "net/dht/dht_record.h"
#include "tests/net/support/identities.h"

namespace bouquet::net {
namespace {

using core::BlockSpan;
using core::ServerRecord;
using core::ServerState;

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// Log lines a node wrote, for tests that check a skip was reported.
struct LogLines {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex);
      lines.push_back(line);
    };
  }
  bool any_contains(const std::string& text) {
    std::lock_guard lock(mutex);
    for (const auto& l : lines) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

// Three nodes: a bootstrap node and two that join through it.
class DhtDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    first_ = std::make_unique<DhtDirectory>(config({}));
    second_ = std::make_unique<DhtDirectory>(config({first_->address()}));
    third_ = std::make_unique<DhtDirectory>(config({first_->address()}));
    ASSERT_TRUE(second_->wait_connected(5));
    ASSERT_TRUE(third_->wait_connected(5));
  }

  DhtDirectoryConfig config(std::vector<std::string> peers) {
    DhtDirectoryConfig c;
    c.listen = "127.0.0.1:0";
    c.initial_peers = std::move(peers);
    c.model_blocks = 8;
    c.fingerprint = "f00d";
    c.log = logs_.sink();
    return c;
  }

  static ServerRecord record(uint64_t peer, BlockSpan span, double ttl_s = 60) {
    ServerRecord r;
    r.peer = testing::test_peer(peer);
    r.address = "127.0.0.1:" + std::to_string(5000 + peer);
    r.span = span;
    r.state = ServerState::online;
    r.throughput_rps = 10.0 * static_cast<double>(peer);
    r.inference_rps = 3.5;
    r.cache_tokens_free = 4096;
    r.model_id = "tiny";
    r.version = "0.1";
    r.expires_at = unix_now() + ttl_s;
    return r;
  }

  core::DirectoryAnswer look_up(DhtDirectory& node, BlockSpan blocks, const std::string& model = "tiny") {
    return node.lookup_now(core::DirectoryLookup{++lookup_id_, model, blocks});
  }

  LogLines logs_;
  uint64_t lookup_id_ = 0;
  std::unique_ptr<DhtDirectory> first_, second_, third_;
};

TEST_F(DhtDirectoryTest, RecordsAnnouncedByOneNodeAreFoundByAnother) {
  const ServerRecord a = record(1, {0, 3});
  const ServerRecord b = record(2, {3, 8});
  second_->announce(core::Announce{a}, testing::test_identity(1));
  second_->announce(core::Announce{b}, testing::test_identity(2));
  // Puts travel asynchronously: the answer may lag the announce by a few milliseconds.
  core::DirectoryAnswer answer;
  for (int i = 0; i < 200 && answer.records.size() < 2; ++i) {
    answer = look_up(*third_, {0, 8});
    if (answer.records.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(answer.records.size(), 2u);
  EXPECT_EQ(answer.lookup_id, lookup_id_);
  // Records come in peer id order, and ids are hashes of keys: find each by its peer.
  auto by_peer = [&](core::PeerId peer) -> const ServerRecord& {
    for (const ServerRecord& r : answer.records) {
      if (r.peer == peer) return r;
    }
    ADD_FAILURE() << "no record of peer " << peer.to_string();
    return answer.records[0];
  };
  const ServerRecord& got = by_peer(a.peer);
  EXPECT_EQ(got.peer, a.peer);
  EXPECT_EQ(got.address, a.address);
  EXPECT_EQ(got.span, a.span);
  EXPECT_EQ(got.state, ServerState::online);
  EXPECT_DOUBLE_EQ(got.throughput_rps, 10.0);
  EXPECT_DOUBLE_EQ(got.inference_rps, 3.5);
  EXPECT_EQ(got.cache_tokens_free, 4096u);
  EXPECT_EQ(got.version, "0.1");
  EXPECT_NEAR(got.expires_at, a.expires_at, 0.5);
  EXPECT_EQ(by_peer(b.peer).span, b.span);
  // A lookup of only block 5 finds only the server that holds it; another model finds nothing.
  const auto only5 = look_up(*first_, {5, 6});
  ASSERT_EQ(only5.records.size(), 1u);
  EXPECT_EQ(only5.records[0].peer, b.peer);
  EXPECT_TRUE(look_up(*first_, {0, 8}, "other").records.empty());
  // The model index lists the model with its size.
  const auto models = third_->models_now();
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0].model_id, "tiny");
  EXPECT_EQ(models[0].model_blocks, 8u);
}

TEST_F(DhtDirectoryTest, ExpiredRecordIsIgnored) {
  const auto announced = std::chrono::steady_clock::now();
  const double ttl_s = 3;
  second_->announce(core::Announce{record(1, {0, 2}, ttl_s)}, testing::test_identity(1));
  second_->announce(core::Announce{record(2, {2, 4}, /*ttl_s=*/-5)},
                    testing::test_identity(2));  // expired when announced
  // The two puts reach the reader in any order: wait until it has seen both.
  const std::string expired_2 = "skipped an expired record of peer " + testing::test_peer(2).to_string();
  core::DirectoryAnswer answer;
  for (int i = 0; i < 200; ++i) {
    answer = look_up(*third_, {0, 4});
    if (!answer.records.empty() && logs_.any_contains(expired_2)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - announced).count(), ttl_s)
      << "the lookups took longer than the record's lifetime (machine overloaded?)";
  ASSERT_EQ(answer.records.size(), 1u);
  EXPECT_EQ(answer.records[0].peer, testing::test_peer(1));
  EXPECT_TRUE(logs_.any_contains(expired_2));
  // The DHT still stores the value (its lifetime is the type's), but readers go by expires_at.
  std::this_thread::sleep_until(announced + std::chrono::milliseconds(static_cast<int>(ttl_s * 1000) + 200));
  EXPECT_TRUE(look_up(*third_, {0, 4}).records.empty());
  EXPECT_TRUE(logs_.any_contains("skipped an expired record of peer " + testing::test_peer(1).to_string()));
}

TEST_F(DhtDirectoryTest, MalformedForeignAndMisplacedValuesAreSkipped) {
  // A raw node puts what a buggy or hostile peer could put under block 1's key.
  dht::DhtRunner raw;
  raw.run(0, dht::crypto::Identity{}, true);
  raw.bootstrap(first_->address());
  const auto key = dht::InfoHash::get(dht_block_key("tiny", 1));
  auto put = [&](uint16_t type, const std::string& bytes) {
    std::promise<bool> done;
    raw.put(key, dht::Value(type, dht::Blob(bytes.begin(), bytes.end())), [&](bool ok) { done.set_value(ok); });
    EXPECT_TRUE(done.get_future().get());
  };
  DhtRecord good;
  good.record = record(7, {0, 2});
  good.block = 1;
  good.announced_unix_s = unix_now();
  DhtRecord elsewhere = good;  // span [4, 6) does not hold block 1
  elsewhere.record.peer = testing::test_peer(8);
  elsewhere.record.span = {4, 6};
  DhtRecord foreign_model = good;
  foreign_model.record.peer = testing::test_peer(9);
  foreign_model.record.model_id = "bigger";
  DhtRecord foreign_fingerprint = good;
  foreign_fingerprint.record.peer = testing::test_peer(10);
  foreign_fingerprint.fingerprint = "beef";
  std::string truncated = encode_dht_record(good, testing::test_identity(7));
  truncated.resize(truncated.size() / 2);

  put(0x6271, "\xff\x00 not json");
  put(0x6271, truncated);
  put(0x6271, R"({"v": 99, "peer": "1"})");
  put(0x6271, R"({"v": 2, "peer": "zz", "address": "x", "key": "", "sig": ""})");
  put(0x6271, encode_dht_record(elsewhere, testing::test_identity(8)));
  put(0x6271, encode_dht_record(foreign_model, testing::test_identity(9)));
  put(0x6271, encode_dht_record(foreign_fingerprint, testing::test_identity(10)));
  put(0, "user data from another application");
  // Announcing as another server: its record with another span (the signature no longer
  // matches), and a record of its peer id signed with the announcer's own key.
  nlohmann::json tampered = nlohmann::json::parse(encode_dht_record(good, testing::test_identity(7)));
  tampered["span"] = {0, 8};
  put(0x6271, tampered.dump());
  nlohmann::json impostor = nlohmann::json::parse(encode_dht_record(elsewhere, testing::test_identity(8)));
  impostor["peer"] = testing::test_peer(7).to_string();
  impostor["span"] = {0, 2};
  impostor.erase("sig");
  impostor["sig"] = testing::test_identity(8).sign(impostor.dump());
  put(0x6271, impostor.dump());
  nlohmann::json unsigned_record = nlohmann::json::parse(encode_dht_record(good, testing::test_identity(7)));
  unsigned_record.erase("sig");
  put(0x6271, unsigned_record.dump());
  put(0x6271, encode_dht_record(good, testing::test_identity(7)));

  const auto answer = look_up(*third_, {0, 2});
  ASSERT_EQ(answer.records.size(), 1u);
  EXPECT_EQ(answer.records[0].peer, testing::test_peer(7));
  EXPECT_EQ(third_->skipped_records(), 11u);
  EXPECT_TRUE(logs_.any_contains("skipped a malformed record under model 'tiny' block 1: not a JSON object"));
  EXPECT_TRUE(logs_.any_contains("record version 99"));
  EXPECT_TRUE(logs_.any_contains("claims block 1 with span [4, 6)"));
  EXPECT_TRUE(logs_.any_contains("model 'bigger'"));
  EXPECT_TRUE(logs_.any_contains("fingerprint beef"));
  EXPECT_TRUE(logs_.any_contains("foreign type 0"));
  EXPECT_TRUE(logs_.any_contains("field \"sig\" is not the key's signature of the record"));
  EXPECT_TRUE(logs_.any_contains("not the id of the record's key"));
  EXPECT_TRUE(logs_.any_contains("unsigned"));
  raw.join();
}

TEST_F(DhtDirectoryTest, NewestAnnouncementOfAPeerWins) {
  // A server leaves [0, 4) for [4, 8): readers see only the new span, even where the old
  // record of blocks 0-3 has not expired.
  ServerRecord old_span = record(3, {0, 4});
  second_->announce(core::Announce{old_span}, testing::test_identity(3));
  ServerRecord offline = old_span;
  offline.state = ServerState::offline;
  second_->announce(core::Announce{offline}, testing::test_identity(3));
  ServerRecord new_span = record(3, {4, 8});
  new_span.state = ServerState::joining;
  second_->announce(core::Announce{new_span}, testing::test_identity(3));
  core::DirectoryAnswer answer;
  // The three values reach the reader in any order and batches: wait until it has seen the new
  // one and also an older one it had to skip (the case this test is about).
  const std::string stale_line = "skipped a stale record of peer " + testing::test_peer(3).to_string();
  for (int i = 0; i < 300; ++i) {
    answer = look_up(*third_, {0, 8});
    if (answer.records.size() == 1 && answer.records[0].span == new_span.span && logs_.any_contains(stale_line)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(answer.records.size(), 1u);
  EXPECT_EQ(answer.records[0].span, new_span.span);
  EXPECT_EQ(answer.records[0].state, ServerState::joining);
  EXPECT_TRUE(logs_.any_contains(stale_line));
}

TEST(DhtRecordTest, EncodeDecodeRoundTripsEveryField) {
  DhtRecord in;
  in.record.peer = testing::test_peer(1);
  in.record.address = "[::1]:4000";
  in.record.span = {2, 5};
  in.record.state = ServerState::joining;
  in.record.throughput_rps = 12.25;
  in.record.inference_rps = 40.5;
  in.record.cache_tokens_free = 123456;
  in.record.model_id = "llama";
  in.record.version = "0.1";
  in.record.adapters = {"lora-a"};
  in.record.expires_at = 1.7e9;
  in.block = 3;
  in.model_blocks = 32;
  in.fingerprint = "abc";
  in.announced_unix_s = 1.6e9;
  in.seq = 42;
  auto out = decode_dht_record(encode_dht_record(in, testing::test_identity(1)));
  ASSERT_TRUE(std::holds_alternative<DhtRecord>(out)) << std::get<std::string>(out);
  const auto& r = std::get<DhtRecord>(out);
  EXPECT_EQ(r.record.peer, in.record.peer);
  EXPECT_EQ(r.record.address, in.record.address);
  EXPECT_EQ(r.record.span, in.record.span);
  EXPECT_EQ(r.record.state, in.record.state);
  EXPECT_EQ(r.record.throughput_rps, in.record.throughput_rps);
  EXPECT_EQ(r.record.inference_rps, in.record.inference_rps);
  EXPECT_EQ(r.record.cache_tokens_free, in.record.cache_tokens_free);
  EXPECT_EQ(r.record.model_id, in.record.model_id);
  EXPECT_EQ(r.record.adapters, in.record.adapters);
  EXPECT_EQ(r.record.expires_at, in.record.expires_at);
  EXPECT_EQ(r.block, 3u);
  EXPECT_EQ(r.model_blocks, 32u);
  EXPECT_EQ(r.fingerprint, "abc");
  EXPECT_EQ(r.seq, 42u);
  EXPECT_EQ(r.public_key, testing::test_identity(1).public_key_hex());
  // Only the record's own key signs for it.
  EXPECT_THROW(encode_dht_record(in, testing::test_identity(2)), std::logic_error);
  // A negative throughput or an empty span is not a record.
  in.record.throughput_rps = -1;
  EXPECT_TRUE(std::holds_alternative<std::string>(decode_dht_record(encode_dht_record(in, testing::test_identity(1)))));
}

// A reader verifies each record's signature once: the same record again is a cache hit, and a
// copy with a field changed but the signature kept (an address pointed elsewhere) is verified, and
// refused, whatever the cache holds. The cache keeps at most its capacity.
TEST(DhtRecordTest, VerifiedRecordsAreCachedButATamperedCopyIsStillRefused) {
  DhtRecord in;
  in.record.peer = testing::test_peer(5);
  in.record.address = "127.0.0.1:4000";
  in.record.span = {0, 4};
  in.record.model_id = "tiny";
  in.record.expires_at = 1.7e9;
  in.block = 1;
  in.announced_unix_s = 1.6e9;
  const std::string bytes = encode_dht_record(in, testing::test_identity(5));
  VerifiedRecords verified(2);
  ASSERT_TRUE(std::holds_alternative<DhtRecord>(decode_dht_record(bytes, &verified)));
  EXPECT_EQ(verified.size(), 1u);
  EXPECT_EQ(verified.hits(), 0u);
  ASSERT_TRUE(std::holds_alternative<DhtRecord>(decode_dht_record(bytes, &verified)));
  EXPECT_EQ(verified.hits(), 1u);

  nlohmann::json tampered = nlohmann::json::parse(bytes);
  tampered["address"] = "127.0.0.1:6666";
  const auto refused = decode_dht_record(tampered.dump(), &verified);
  ASSERT_TRUE(std::holds_alternative<std::string>(refused));
  EXPECT_NE(std::get<std::string>(refused).find("\"sig\""), std::string::npos) << std::get<std::string>(refused);
  EXPECT_EQ(verified.hits(), 1u);
  EXPECT_EQ(verified.size(), 1u);

  for (uint32_t block = 2; block <= 3; ++block) {
    in.block = block;
    ASSERT_TRUE(std::holds_alternative<DhtRecord>(
        decode_dht_record(encode_dht_record(in, testing::test_identity(5)), &verified)));
  }
  EXPECT_EQ(verified.size(), 2u) << "bounded: the oldest went";
  ASSERT_TRUE(std::holds_alternative<DhtRecord>(decode_dht_record(bytes, &verified)));
  EXPECT_EQ(verified.hits(), 1u) << "the first record was evicted, so verified again";
}

// Anyone can publish a record: every number in it is checked before it is converted, and a bad one
// is a reason naming the field (the reader skips the record), never undefined behaviour.
TEST(DhtRecordTest, OutOfRangeNumbersAreRejectedNamingTheField) {
  DhtRecord in;
  in.record.peer = testing::test_peer(7);
  in.record.address = "127.0.0.1:4000";
  in.record.span = {0, 4};
  in.record.model_id = "tiny";
  in.record.expires_at = 1.7e9;
  in.block = 1;
  in.model_blocks = 8;
  in.announced_unix_s = 1.6e9;
  const nlohmann::json good = nlohmann::json::parse(encode_dht_record(in, testing::test_identity(7)));
  ASSERT_TRUE(std::holds_alternative<DhtRecord>(decode_dht_record(good.dump())));
  struct Case {
    const char* field;
    nlohmann::json value;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"span", nlohmann::json::array({1e20, 4}), "field \"span[0]\" is 1e+20, not an integer"},
      {"span", nlohmann::json::array({0.5, 4}), "field \"span[0]\" is 0.5, not an integer"},
      {"span", nlohmann::json::array({-1, 4}), "field \"span[0]\" is -1, outside [0, 65536]"},
      {"span", nlohmann::json::array({0, 4294967297ull}), "field \"span[1]\" is 4294967297, outside"},
      {"span", nlohmann::json::array({0, 9}), "field \"span\" is [0, 9) but the model has 8 blocks"},
      {"block", 1e300, "field \"block\" is 1e+300, not an integer"},
      {"block", "1", "field \"block\" is \"1\", not an integer"},
      {"model_blocks", 5000000000ull, "field \"model_blocks\" is 5000000000, outside"},
      {"model_blocks", -8, "field \"model_blocks\" is -8, outside"},
      {"cache_tokens_free", -1, "field \"cache_tokens_free\" is -1, outside"},
      {"cache_tokens_free", 1.8e19, "field \"cache_tokens_free\" is 1.8e+19, not an integer"},
      {"throughput_rps", 1e300, "field \"throughput_rps\" is 1e+300, outside"},
      {"inference_rps", -0.5, "field \"inference_rps\" is -0.5, outside"},
      {"inference_rps", nullptr, "field \"inference_rps\" is null, not a number"},
      {"expires_at", -1, "field \"expires_at\" is -1, outside"},
      {"expires_at", 1e308, "field \"expires_at\" is 1e+308, outside"},
      {"announced_at", "now", "field \"announced_at\" is \"now\", not a number"},
      {"seq", -3, "field \"seq\" is -3, outside"},
      {"seq", 2.5, "field \"seq\" is 2.5, not an integer"},
      {"address", "", "field \"address\": '' is not HOST:PORT"},
      {"address", "127.0.0.1:99999", "field \"address\": '127.0.0.1:99999' is not HOST:PORT (bad port)"},
      {"address", "127.0.0.1:0", "(port 0)"},
      {"address", "nowhere", "(no port)"},
  };
  for (const Case& c : cases) {
    nlohmann::json bad = good;
    bad[c.field] = c.value;
    // Signed again, as a hostile announcer would: the field itself must be refused.
    bad.erase("sig");
    bad["sig"] = testing::test_identity(7).sign(bad.dump());
    const auto out = decode_dht_record(bad.dump());
    ASSERT_TRUE(std::holds_alternative<std::string>(out)) << bad.dump();
    EXPECT_NE(std::get<std::string>(out).find(c.reason), std::string::npos)
        << "got: " << std::get<std::string>(out) << "\nwanted: " << c.reason;
  }
}

TEST(DhtRecordTest, ModelIndexEntriesAreCheckedLikeRecords) {
  const auto good = decode_dht_model_index(R"({"v": 2, "model": "tiny", "model_blocks": 8, "expires_at": 1.7e9})");
  ASSERT_TRUE(std::holds_alternative<DhtModelIndexEntry>(good)) << std::get<std::string>(good);
  EXPECT_EQ(std::get<DhtModelIndexEntry>(good).model_blocks, 8u);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"v": "1", "model": "tiny", "expires_at": 1.7e9})", "record version \"1\""},
      {R"({"v": 2, "model": "tiny", "model_blocks": 1e20, "expires_at": 1.7e9})", "field \"model_blocks\""},
      {R"({"v": 2, "model": "tiny", "model_blocks": 4000000000, "expires_at": 1.7e9})", "field \"model_blocks\""},
      {R"({"v": 2, "model": 3, "expires_at": 1.7e9})", "bad field"},
      {R"({"v": 2, "model": "tiny", "expires_at": -1})", "field \"expires_at\""},
  };
  for (const auto& [bytes, reason] : cases) {
    const auto out = decode_dht_model_index(bytes);
    ASSERT_TRUE(std::holds_alternative<std::string>(out)) << bytes;
    EXPECT_NE(std::get<std::string>(out).find(reason), std::string::npos) << std::get<std::string>(out);
  }
}

}  // namespace
}  // namespace bouquet::net
