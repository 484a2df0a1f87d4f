#include "net/health/health_state.h"

#include <nlohmann/json.hpp>

#include <set>

namespace bouquet::net::health {

std::string state_json(const std::vector<SwarmModel>& models, const RttTable& rtt_s, int64_t updated_at) {
  using nlohmann::json;
  json out = {{"updated_at", updated_at}, {"models", json::array()}};
  for (const SwarmModel& m : models) {
    json blocks = json::array();
    json servers = json::array();
    std::set<std::string> seen;  // a server appears once, not once per block it holds
    for (const SwarmBlock& block : m.blocks) {
      int online = 0;
      double throughput = 0;
      for (const core::ServerRecord& r : block.servers) {
        if (r.state == core::ServerState::online) {
          ++online;
          throughput += r.throughput_rps;
        }
        if (!seen.insert(r.peer.to_string()).second) continue;
        auto rtt = rtt_s.find(r.address);
        servers.push_back({{"peer", r.peer.to_string()},
                           {"address", r.address},
                           {"span", {r.span.begin, r.span.end}},
                           {"state", std::string(core::to_string(r.state))},
                           {"throughput_rps", r.throughput_rps},
                           {"inference_rps", r.inference_rps},
                           {"cache_tokens_free", r.cache_tokens_free},
                           {"version", r.version},
                           {"adapters", r.adapters},
                           {"rtt_ms", rtt == rtt_s.end() ? json(nullptr) : json(rtt->second * 1e3)}});
      }
      blocks.push_back({{"block", block.block},
                        {"servers", online},
                        {"throughput_rps", throughput},
                        {"coverage", online == 0   ? "none"
                                     : online == 1 ? "thin"
                                                   : "good"}});
    }
    out["models"].push_back({{"name", m.model_id},
                             {"model_blocks", m.model_blocks},
                             {"covered", m.covered},
                             {"blocks", blocks},
                             {"servers", servers}});
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace bouquet::net::health
