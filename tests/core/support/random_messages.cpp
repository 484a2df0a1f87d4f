#include "tests/core/support/random_messages.h"

#include <string>

namespace bouquet::test {
namespace {

using namespace core;

std::string random_string(Rng& rng, size_t max_size) {
  std::string s(rng.below(max_size + 1), ' ');
  for (char& c : s) c = static_cast<char>('a' + rng.below(26));
  return s;
}

BlockSpan random_span(Rng& rng) {
  const auto begin = static_cast<uint32_t>(rng.below(80));
  return BlockSpan{begin, begin + 1 + static_cast<uint32_t>(rng.below(20))};
}

Compression random_compression(Rng& rng) { return static_cast<Compression>(rng.below(3)); }

std::optional<Activation> maybe_activation(Rng& rng, size_t rank) {
  if (rng.bernoulli(0.5)) return std::nullopt;
  return random_activation(rng, rank, 5);
}

}  // namespace

Activation random_activation(Rng& rng, size_t rank, uint32_t max_dim) {
  std::vector<uint32_t> shape(rank);
  uint64_t count = 1;
  for (auto& d : shape) {
    d = 1 + static_cast<uint32_t>(rng.below(max_dim));
    count *= d;
  }
  std::vector<float> values(count);
  for (float& v : values) v = static_cast<float>(rng.normal() * 3.0);
  return make_activation(std::move(shape), std::move(values), static_cast<DType>(rng.below(3)),
                         random_compression(rng));
}

std::vector<Message> random_messages(Rng& rng, std::optional<Compression> compression) {
  auto act = [&](size_t rank, uint32_t max_dim) {
    Activation a = random_activation(rng, rank, max_dim);
    if (compression) a.compression = *compression;
    return a;
  };
  auto maybe = [&](size_t rank) {
    auto a = maybe_activation(rng, rank);
    if (a && compression) a->compression = *compression;
    return a;
  };
  std::vector<Message> out;
  out.push_back(OpenSession{rng.next_u64(), random_string(rng, 40), random_span(rng),
                            static_cast<uint32_t>(rng.below(8192)), static_cast<uint32_t>(1 + rng.below(8)),
                            random_compression(rng), rng.uniform(0, 60), random_string(rng, 10)});
  out.push_back(SessionOpened{rng.next_u64()});
  StepRequest step{rng.next_u64(), rng.next_u64(), static_cast<uint32_t>(rng.below(4096)), act(3, 12), maybe(4), {}};
  for (uint64_t i = rng.below(3); i > 0; --i) {
    step.next_servers.push_back(NextServer{PeerId{rng.next_u64()}, rng.next_u64(), random_span(rng)});
  }
  out.push_back(step);
  out.push_back(StepResult{rng.next_u64(), rng.next_u64(), static_cast<uint32_t>(rng.below(4096)), act(3, 12)});
  out.push_back(CloseSession{rng.next_u64()});
  out.push_back(ForwardRequest{rng.next_u64(), random_string(rng, 40), random_span(rng), random_string(rng, 10),
                               random_compression(rng), act(3, 10), maybe(4)});
  out.push_back(ForwardResult{rng.next_u64(), act(3, 10)});
  out.push_back(BackwardRequest{rng.next_u64(), random_string(rng, 40), random_span(rng), random_string(rng, 10),
                                random_compression(rng), act(3, 10), act(3, 10), maybe(4)});
  out.push_back(BackwardResult{rng.next_u64(), act(3, 10), maybe(4)});
  out.push_back(InfoRequest{rng.next_u64()});
  InfoReply info{
      rng.next_u64(),      random_string(rng, 40), random_span(rng),    static_cast<uint32_t>(rng.below(16384)),
      "bouquet 0.1",       rng.next_u64(),         rng.next_u64(),      {},
      rng.uniform(0, 100), rng.uniform(0, 1000),   rng.uniform(0, 1000)};
  for (uint64_t i = rng.below(4); i > 0; --i) info.adapters.push_back(random_string(rng, 20));
  info.request_tokens_max = static_cast<uint32_t>(rng.next_u64());
  info.client_cache_tokens_max = rng.next_u64();
  info.client_opens_waiting_max = static_cast<uint32_t>(rng.below(100));
  info.client_tasks_queued_max = static_cast<uint32_t>(rng.below(100));
  info.tasks_queued_max = static_cast<uint32_t>(rng.below(10000));
  out.push_back(info);
  out.push_back(ErrorReply{rng.next_u64(), rng.next_u64(),
                           Error{static_cast<ErrorCode>(1 + rng.below(kLastErrorCode)), random_string(rng, 80)}});
  // Half of the challenged requests and their replies carry the identity challenge (wire versions 3 and 4).
  for (Message& m : out) {
    std::visit(
        [&](auto& x) {
          if constexpr (requires { x.identity_nonce; }) {
            if (rng.bernoulli(0.5)) x.identity_nonce = random_string(rng, 40);
          } else if constexpr (requires { x.identity_proof; }) {
            if (rng.bernoulli(0.5)) x.identity_proof = IdentityProof{random_string(rng, 40), random_string(rng, 80)};
          }
        },
        m);
  }
  return out;
}

}  // namespace bouquet::test
