// `bouquet swarm`: what the directory says about each model — per block, the servers that
// announced it (state, throughput, free cache) and whether every block has an online server.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/server_record.h"
#include "net/dht/dht_directory.h"

namespace bouquet::net {

struct SwarmConfig {
  std::vector<std::string> initial_peers;  // HOST:PORT of DHT nodes (required)
  std::string model;                       // empty: every model in the directory's index
  uint32_t num_blocks = 0;                 // 0: as announced (or up to the last block seen)
  bool json = false;
  std::string listen = "0.0.0.0:0";  // this tool's own DHT node
  double connect_timeout_s = 10;
};

struct SwarmBlock {
  uint32_t block = 0;
  std::vector<core::ServerRecord> servers;  // highest throughput first
};

struct SwarmModel {
  std::string model_id;
  uint32_t model_blocks = 0;
  bool blocks_known = true;  // false: nobody announced the model's size, blocks end at the last seen
  std::vector<SwarmBlock> blocks;
  bool covered = false;  // every block has at least one online server
};

// Reads the directory through `directory` (already joined). `num_blocks` 0: as announced.
std::vector<SwarmModel> collect_swarm(DhtDirectory& directory, const std::string& model, uint32_t num_blocks);
std::string format_swarm(const std::vector<SwarmModel>& models);
std::string swarm_json(const std::vector<SwarmModel>& models);

// The whole command: join, collect, print; returns the exit status (0 even when uncovered;
// 1 when no DHT node answered).
int run_swarm(const SwarmConfig& config);

}  // namespace bouquet::net
