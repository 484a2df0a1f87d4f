#include "net/dht/swarm_report.h"

#include <fmt/core.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace bouquet::net {
namespace {

// Without an announced size, look this far: beyond any model Bouquet serves.
constexpr uint32_t kProbeBlocks = 256;

}  // namespace

std::vector<SwarmModel> collect_swarm(DhtDirectory& directory, const std::string& model, uint32_t num_blocks) {
  std::vector<DhtModelEntry> entries;
  const auto index = directory.models_now();
  if (model.empty()) {
    entries = index;
  } else {
    entries.push_back(DhtModelEntry{model, 0});
    for (const auto& e : index) {
      if (e.model_id == model) entries.back().model_blocks = e.model_blocks;
    }
  }
  std::vector<SwarmModel> out;
  uint64_t next_lookup = 1;
  for (const auto& entry : entries) {
    SwarmModel m;
    m.model_id = entry.model_id;
    uint32_t blocks = num_blocks ? num_blocks : entry.model_blocks;
    m.blocks_known = blocks > 0;
    const auto answer =
        directory.lookup_now(core::DirectoryLookup{next_lookup++, entry.model_id, {0, blocks ? blocks : kProbeBlocks}});
    if (!m.blocks_known) {
      for (const auto& r : answer.records) blocks = std::max(blocks, r.span.end);
    }
    m.model_blocks = blocks;
    for (uint32_t b = 0; b < blocks; ++b) m.blocks.push_back(SwarmBlock{b, {}});
    for (const auto& r : answer.records) {
      for (uint32_t b = r.span.begin; b < std::min(r.span.end, blocks); ++b) m.blocks[b].servers.push_back(r);
    }
    m.covered = blocks > 0;
    for (auto& block : m.blocks) {
      std::sort(block.servers.begin(), block.servers.end(), [](const auto& a, const auto& b) {
        return a.throughput_rps != b.throughput_rps ? a.throughput_rps > b.throughput_rps : a.peer < b.peer;
      });
      const bool online = std::any_of(block.servers.begin(), block.servers.end(),
                                      [](const auto& r) { return r.state == core::ServerState::online; });
      m.covered = m.covered && online;
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string format_swarm(const std::vector<SwarmModel>& models) {
  if (models.empty()) return "no models announced\n";
  std::string text;
  for (const auto& m : models) {
    text += fmt::format("model {} ({} blocks{}): {}\n", m.model_id, m.model_blocks,
                        m.blocks_known ? "" : ", size not announced", m.covered ? "covered" : "NOT covered");
    for (const auto& block : m.blocks) {
      if (block.servers.empty()) {
        text += fmt::format("  block {}: no server\n", block.block);
        continue;
      }
      for (size_t i = 0; i < block.servers.size(); ++i) {
        const auto& r = block.servers[i];
        text += fmt::format("  {:<10} {} {} span {} {} throughput {:.1f} rps, {} free cache tokens\n",
                            i == 0 ? fmt::format("block {}:", block.block) : "", r.peer.to_string(), r.address,
                            r.span.to_string(), core::to_string(r.state), r.throughput_rps, r.cache_tokens_free);
      }
    }
  }
  return text;
}

std::string swarm_json(const std::vector<SwarmModel>& models) {
  nlohmann::json out = {{"models", nlohmann::json::array()}};
  for (const auto& m : models) {
    nlohmann::json blocks = nlohmann::json::array();
    for (const auto& block : m.blocks) {
      nlohmann::json servers = nlohmann::json::array();
      for (const auto& r : block.servers) {
        servers.push_back({{"peer", r.peer.to_string()},
                           {"address", r.address},
                           {"span", {r.span.begin, r.span.end}},
                           {"state", std::string(core::to_string(r.state))},
                           {"throughput_rps", r.throughput_rps},
                           {"inference_rps", r.inference_rps},
                           {"cache_tokens_free", r.cache_tokens_free}});
      }
      blocks.push_back({{"block", block.block}, {"servers", servers}});
    }
    out["models"].push_back({{"model", m.model_id},
                             {"model_blocks", m.model_blocks},
                             {"blocks_known", m.blocks_known},
                             {"covered", m.covered},
                             {"blocks", blocks}});
  }
  return out.dump();
}

int run_swarm(const SwarmConfig& config) {
  DhtDirectoryConfig dht;
  dht.listen = config.listen;
  dht.initial_peers = config.initial_peers;
  dht.log = [](const std::string& line) {
    if (!routine_dht_skip(line)) fmt::print(stderr, "dht: {}\n", line);
  };
  DhtDirectory directory(dht);
  if (!directory.wait_connected(config.connect_timeout_s)) {
    fmt::print(stderr, "swarm: no DHT node answered within {:.0f} s (initial peers: {})\n", config.connect_timeout_s,
               fmt::join(config.initial_peers, ","));
    return 1;
  }
  const auto models = collect_swarm(directory, config.model, config.num_blocks);
  fmt::print("{}", config.json ? swarm_json(models) + "\n" : format_swarm(models));
  return 0;
}

}  // namespace bouquet::net
