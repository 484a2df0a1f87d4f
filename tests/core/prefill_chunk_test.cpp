// Chunked prefill: a server computes a long step in chunks, other sessions' decode steps running
// between them, and still answers one StepResult; an error or a close mid-chunks touches that
// session only. The server driven by hand, then whole swarms on the virtual clock.
#include "core/block_server.h"

#include <gtest/gtest.h>

#include "core/positions.h"
#include "core/rng.h"
#include "tests/core/support/effects.h"
#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::core {
namespace {

constexpr uint32_t kHidden = 2;

struct Harness {
  BlockServer server;
  Time now = 0;
  std::vector<Effect> effects;

  explicit Harness(BlockServerConfig config) : server(std::move(config)) {}

  void input(const Input& in) {
    effects.clear();
    server.handle(now, in, effects);
  }
  void receive(PeerId from, Message m) { input(MessageReceived{from, std::move(m)}); }
  template <class M>
  std::vector<M> replies(PeerId to) const {
    std::vector<M> out;
    for (const auto& [peer, m] : test::sent_of<M>(effects)) {
      if (peer == to) out.push_back(m);
    }
    return out;
  }
  // Every request the last input started, single or batched.
  std::vector<ComputeRequest> started() const {
    std::vector<ComputeRequest> out;
    for (const auto& one : test::effects_of<StartCompute>(effects)) out.push_back(one.request);
    for (const auto& batch : test::effects_of<StartBatch>(effects))
      out.insert(out.end(), batch.requests.begin(), batch.requests.end());
    return out;
  }
  // The one request the last input started for `cache` (fails the test when not exactly one).
  ComputeRequest started_for(CacheId cache) const {
    std::vector<ComputeRequest> found;
    for (const auto& r : started()) {
      if (r.cache_id == cache) found.push_back(r);
    }
    EXPECT_EQ(found.size(), 1u) << "requests started for cache " << cache;
    return found.empty() ? ComputeRequest{} : found[0];
  }
  // Finishes a compute with its inputs as outputs: a reply then shows which positions it holds.
  void finish(const ComputeRequest& r) { input(ComputeFinished{r.task_id, ComputeOutput{r.inputs, std::nullopt}}); }
  void finish_all(const std::vector<ComputeRequest>& rs) {
    std::vector<Effect> all;
    for (const auto& r : rs) {
      finish(r);
      all.insert(all.end(), effects.begin(), effects.end());
    }
    effects = std::move(all);
  }
};

BlockServerConfig config(uint32_t max_batch, std::optional<uint32_t> prefill_chunk = std::nullopt) {
  BlockServerConfig c;
  c.model_id = "m";
  c.span = {0, 4};
  c.hidden_size = kHidden;
  c.cache_tokens = 1000;
  c.max_batch = max_batch;
  c.prefill_chunk = prefill_chunk;
  return c;
}

OpenSession open(uint64_t id, uint32_t batch = 1) {
  return OpenSession{id, "m", {0, 4}, 100, batch, Compression::float16, 0, "", std::nullopt};
}

// Position p of sequence r holds the values (100 r + p, -(100 r + p)): a reply's values name the
// positions it carries, in order (exact in float16).
Activation positions_from(uint32_t start, uint32_t tokens, uint32_t batch = 1) {
  std::vector<float> values;
  for (uint32_t r = 0; r < batch; ++r) {
    for (uint32_t p = start; p < start + tokens; ++p) {
      values.push_back(static_cast<float>(100 * r + p));
      values.push_back(-static_cast<float>(100 * r + p));
    }
  }
  return make_activation({batch, tokens, kHidden}, std::move(values));
}

StepRequest step(uint64_t session, uint64_t step_id, uint32_t start, uint32_t tokens, uint32_t batch = 1) {
  return StepRequest{session, step_id, start, positions_from(start, tokens, batch), std::nullopt, {}};
}

// Sessions 1..n, one per peer (peers 1..n); returns their caches.
std::vector<CacheId> open_sessions(Harness& h, uint64_t n) {
  std::vector<CacheId> caches;
  for (uint64_t i = 1; i <= n; ++i) {
    h.receive(PeerId{i}, open(i));
    EXPECT_EQ(h.replies<SessionOpened>(PeerId{i}).size(), 1u);
    // The first step names the cache; a one-token step at 0 starts at once on an idle server.
    h.receive(PeerId{i}, step(i, 100, 0, 1));
    const auto started = h.started();
    EXPECT_EQ(started.size(), 1u);
    caches.push_back(started.at(0).cache_id);
    h.finish(started.at(0));
  }
  return caches;
}

TEST(PrefillChunk, ALongPrefillInterleavesWithOtherSessionsDecodeStepsAndRepliesOnce) {
  Harness h(config(4));  // chunks of max_batch = 4 rows by default
  const auto caches = open_sessions(h, 3);
  h.receive(PeerId{1}, step(1, 7, 1, 10));  // 10 new positions from 1: chunks of 4, 4, 2
  ComputeRequest chunk = h.started_for(caches[0]);
  EXPECT_EQ(chunk.new_tokens, 4u);
  EXPECT_EQ(chunk.cache_length, 1u);
  h.receive(PeerId{2}, step(2, 1, 1, 1));
  h.receive(PeerId{3}, step(3, 1, 1, 1));
  EXPECT_TRUE(h.started().empty()) << "one slot, busy with the first chunk";

  // Between two chunks the decode steps that queued meanwhile run, together.
  h.finish(chunk);
  EXPECT_TRUE(h.replies<StepResult>(PeerId{1}).empty()) << "no reply before the whole step is done";
  auto decodes = h.started();
  ASSERT_EQ(decodes.size(), 2u);
  EXPECT_EQ(decodes[0].cache_id, caches[1]);
  EXPECT_EQ(decodes[1].cache_id, caches[2]);
  h.finish_all(decodes);
  EXPECT_EQ(h.replies<StepResult>(PeerId{2}).size(), 1u);
  EXPECT_EQ(h.replies<StepResult>(PeerId{3}).size(), 1u);
  chunk = h.started_for(caches[0]);
  EXPECT_EQ(chunk.new_tokens, 4u);
  EXPECT_EQ(chunk.cache_length, 5u) << "appended to what the first chunk cached";
  EXPECT_EQ(chunk.inputs.to_floats(), positions_from(5, 4).to_floats());

  // The decoders step again; the last chunk (2 rows) fits beside them in one pass of 4 rows.
  h.receive(PeerId{2}, step(2, 2, 2, 1));
  h.receive(PeerId{3}, step(3, 2, 2, 1));
  h.finish(chunk);
  const auto mixed = h.started();
  ASSERT_EQ(mixed.size(), 3u);
  EXPECT_EQ(test::effects_of<StartBatch>(h.effects).size(), 1u);
  EXPECT_EQ(mixed[2].cache_id, caches[0]);
  EXPECT_EQ(mixed[2].new_tokens, 2u);
  EXPECT_EQ(mixed[2].cache_length, 9u);
  h.finish_all(mixed);

  const auto results = h.replies<StepResult>(PeerId{1});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].step_id, 7u);
  EXPECT_EQ(results[0].start_position, 1u);
  EXPECT_EQ(results[0].hidden_states.shape, (std::vector<uint32_t>{1, 10, kHidden}));
  EXPECT_EQ(results[0].hidden_states.compression, Compression::float16);
  EXPECT_EQ(results[0].hidden_states.to_floats(), positions_from(1, 10).to_floats()) << "every position, in order";
  // The session goes on at 11, like after a step computed at once.
  h.receive(PeerId{1}, step(1, 8, 11, 1));
  EXPECT_EQ(h.started_for(caches[0]).cache_length, 11u);
}

TEST(PrefillChunk, AChunkedStepThatRewindsStartsAtItsOwnStartPosition) {
  Harness h(config(4));
  const auto caches = open_sessions(h, 1);
  h.receive(PeerId{1}, step(1, 1, 1, 3));
  h.finish(h.started_for(caches[0]));      // 4 positions cached
  h.receive(PeerId{1}, step(1, 2, 0, 6));  // the whole sequence again (a cache-less client)
  ComputeRequest chunk = h.started_for(caches[0]);
  EXPECT_EQ(chunk.cache_length, 0u);
  EXPECT_EQ(chunk.new_tokens, 4u);
  h.finish(chunk);
  chunk = h.started_for(caches[0]);
  EXPECT_EQ(chunk.cache_length, 4u);
  EXPECT_EQ(chunk.new_tokens, 2u);
  h.finish(chunk);
  const auto results = h.replies<StepResult>(PeerId{1});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].start_position, 0u);
  EXPECT_EQ(results[0].hidden_states.to_floats(), positions_from(0, 6).to_floats());
}

TEST(PrefillChunk, ChunkSizeDefaultsToTheMaxBatchCountsRowsAndZeroNeverSplits) {
  struct Case {
    uint32_t max_batch;
    std::optional<uint32_t> chunk;
    uint32_t batch;
    uint32_t expected_tokens;
  };
  for (const Case c : {Case{4, std::nullopt, 1, 4}, Case{4, std::nullopt, 2, 2}, Case{4, 0u, 1, 10},
                       Case{1, std::nullopt, 1, 10}, Case{1, 3u, 1, 3}, Case{8, 3u, 5, 1}}) {
    SCOPED_TRACE(testing::Message() << "max_batch " << c.max_batch << ", chunk "
                                    << (c.chunk ? std::to_string(*c.chunk) : "default") << ", batch " << c.batch);
    Harness h(config(c.max_batch, c.chunk));
    h.receive(PeerId{1}, open(1, c.batch));
    h.receive(PeerId{1}, step(1, 1, 0, 10, c.batch));
    const auto started = h.started();
    ASSERT_EQ(started.size(), 1u);
    EXPECT_EQ(started[0].new_tokens, c.expected_tokens);
    EXPECT_EQ(started[0].batch, c.batch);
  }
  EXPECT_EQ(chunk_tokens(3, 10, 8), 2u);
  EXPECT_EQ(chunk_tokens(1, 10, 0), 10u);
  EXPECT_EQ(chunk_tokens(1, 4, 4), 4u);
}

TEST(PrefillChunk, AFailedChunkFailsThatSessionsStepOnlyAndKeepsTheChunksBefore) {
  Harness h(config(4));
  const auto caches = open_sessions(h, 2);
  h.receive(PeerId{1}, step(1, 5, 1, 12));
  const ComputeRequest first = h.started_for(caches[0]);
  h.receive(PeerId{2}, step(2, 1, 1, 1));
  h.finish(first);
  h.finish_all(h.started());  // the decoder's step
  ASSERT_EQ(h.replies<StepResult>(PeerId{2}).size(), 1u);
  const ComputeRequest second = h.started_for(caches[0]);
  h.receive(PeerId{2}, step(2, 2, 2, 1));
  h.input(ComputeFinished{second.task_id, Error{ErrorCode::compute_failed, "out of memory"}});
  const auto errors = h.replies<ErrorReply>(PeerId{1});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].step_id, 5u);
  EXPECT_EQ(errors[0].error.code, ErrorCode::compute_failed);
  // No further chunk: only the decoder's step starts, and it completes.
  const auto next = h.started();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].cache_id, caches[1]);
  h.finish(next[0]);
  EXPECT_EQ(h.replies<StepResult>(PeerId{2}).size(), 1u);
  EXPECT_TRUE(h.replies<ErrorReply>(PeerId{2}).empty());
  // The first chunk's positions stay cached: the session may go on from 5, not past it.
  h.receive(PeerId{1}, step(1, 6, 6, 1));
  ASSERT_EQ(h.replies<ErrorReply>(PeerId{1}).size(), 1u);
  EXPECT_EQ(h.replies<ErrorReply>(PeerId{1})[0].error.code, ErrorCode::bad_position);
  h.receive(PeerId{1}, step(1, 6, 5, 3));
  EXPECT_EQ(h.started_for(caches[0]).cache_length, 5u);
  EXPECT_EQ(h.server.load(100).rows_ahead, 3.0) << "only the running step; no chunk left over";
}

TEST(PrefillChunk, AStepSentMidChunksIsRefusedBusy) {
  Harness h(config(4));
  open_sessions(h, 1);
  h.receive(PeerId{1}, step(1, 5, 1, 12));
  h.receive(PeerId{1}, step(1, 6, 13, 1));
  const auto errors = h.replies<ErrorReply>(PeerId{1});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error.code, ErrorCode::session_busy);
}

TEST(PrefillChunk, ClosingMidChunksStopsThemAndFreesTheCacheOnceNoChunkRuns) {
  Harness h(config(4));
  const auto caches = open_sessions(h, 2);
  const uint64_t free_before = h.server.cache_tokens_free();
  h.receive(PeerId{1}, step(1, 5, 1, 12));
  const ComputeRequest running = h.started_for(caches[0]);
  h.receive(PeerId{1}, CloseSession{1});
  EXPECT_TRUE(test::effects_of<DropCache>(h.effects).empty()) << "a chunk runs on that cache";
  h.finish(running);
  const auto drops = test::effects_of<DropCache>(h.effects);
  ASSERT_EQ(drops.size(), 1u);
  EXPECT_EQ(drops[0].cache_id, caches[0]);
  EXPECT_TRUE(h.started().empty()) << "no chunk after the close";
  EXPECT_TRUE(h.replies<StepResult>(PeerId{1}).empty());
  EXPECT_EQ(h.server.cache_tokens_free(), free_before + 100);
  EXPECT_EQ(h.server.open_sessions(), 1u);
  EXPECT_FALSE(h.server.holds_work(PeerId{1}));
  EXPECT_EQ(h.server.load(100).rows_ahead, 0.0);

  // A client gone while its next chunk waits behind a decode step: the chunk never starts.
  h.receive(PeerId{3}, open(3));
  h.receive(PeerId{3}, step(3, 1, 0, 9));
  const ComputeRequest first = h.started().at(0);
  h.receive(PeerId{2}, step(2, 1, 1, 1));
  h.finish(first);
  const auto decode = h.started();
  ASSERT_EQ(decode.size(), 1u);
  EXPECT_EQ(decode[0].cache_id, caches[1]);
  h.input(PeerUnreachable{PeerId{3}, "connection reset"});
  ASSERT_EQ(test::effects_of<DropCache>(h.effects).size(), 1u);
  EXPECT_EQ(test::effects_of<DropCache>(h.effects)[0].cache_id, first.cache_id);
  h.finish(decode[0]);
  EXPECT_TRUE(h.started().empty());
  EXPECT_EQ(h.server.queued_tasks(), 0u);
  EXPECT_EQ(h.server.cache_tokens_free(), free_before + 100);
}

}  // namespace
}  // namespace bouquet::core

namespace bouquet::test {
namespace {

using namespace core;

// Generations with long prompts among decoding ones, on servers that chunk (and, for the same
// seed, servers that do not): every output equals the reference exactly (the fake blocks hash
// every cached position, so a chunk appended at the wrong place changes the result).
TEST(PrefillChunkSwarm, LongPromptsAmongDecodersGiveTheReferenceOutputs) {
  constexpr uint32_t kBlocks = 6;
  const std::string model = "fake-6/chunks";
  for (const uint32_t chunk : {0u, 3u}) {
    SCOPED_TRACE(testing::Message() << "prefill_chunk " << chunk);
    const uint64_t seed = test_seed(61);
    Rng rng(seed);
    VirtualSwarm swarm(seed);
    uint64_t computations = 0;
    std::vector<PeerId> servers;
    for (BlockSpan span : {BlockSpan{0, 2}, BlockSpan{2, kBlocks}}) {
      BlockServerConfig c;
      c.model_id = model;
      c.span = span;
      c.hidden_size = 4;
      c.cache_tokens = 1 << 20;
      c.max_batch = 4;
      c.prefill_chunk = chunk;
      servers.push_back(swarm.add_server(c));
    }
    std::vector<GenerationSpec> specs;
    std::vector<size_t> ids;
    for (int i = 0; i < 8; ++i) {
      GenerationSpec g;
      g.session.session_id = 1 + static_cast<uint64_t>(i);
      g.session.model_id = model;
      g.session.num_blocks = kBlocks;
      g.session.hidden_size = 4;
      g.session.batch = 1 + static_cast<uint32_t>(rng.below(2));
      g.session.recovery = RecoveryPolicy::none;
      g.prompt_tokens =
          i % 3 == 0 ? 20 + static_cast<uint32_t>(rng.below(20)) : 1 + static_cast<uint32_t>(rng.below(3));
      g.new_tokens = 4 + static_cast<uint32_t>(rng.below(6));
      g.session.max_length = g.prompt_tokens + g.new_tokens + 1;
      g.prompt_seed = rng.next_u64();
      g.start_at = rng.uniform(0, 0.05);
      specs.push_back(g);
      ids.push_back(swarm.generate(swarm.add_client(), g));
    }
    swarm.run();
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& r = swarm.result(ids[i]);
      ASSERT_TRUE(r.closed && !r.error) << i << ": " << (r.error ? r.error->to_string() : "unfinished");
      EXPECT_EQ(r.outputs, reference_outputs(specs[i])) << "generation " << i;
    }
    for (PeerId s : servers) computations += swarm.computes_started(s).size();
    uint64_t steps = 0;
    for (const auto& spec : specs) steps += 2 * (1 + spec.new_tokens);  // per server: prompt + decodes
    if (chunk == 0) {
      EXPECT_EQ(computations, steps) << "one computation per step and server";
    } else {
      EXPECT_GT(computations, steps + 10) << "long prompts should have run in chunks";
    }
  }
}

}  // namespace
}  // namespace bouquet::test
