// `bouquet health`'s data: per model, its blocks and how well each is covered, and every server's
// record with the round trip the monitor measured to it. The page and GET /api/v1/state show the
// same object, so what a person sees is what a script can check.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "net/dht/swarm_report.h"

namespace bouquet::net::health {

// Round trips the monitor measured, seconds, by server address (absent: no answer).
using RttTable = std::map<std::string, double>;

// {"updated_at": unix s, "models": [{"name", "model_blocks", "covered", "blocks": [{"block",
// "servers" (online ones), "throughput_rps" (their sum), "coverage": "none"|"thin"|"good"}],
// "servers": [{"peer", "address", "span": [a, b], "state", "throughput_rps", "inference_rps",
// "cache_tokens_free", "version", "adapters", "rtt_ms" (null: unreachable)}]}]}.
// A block is "thin" with one online server, "good" with two or more.
std::string state_json(const std::vector<SwarmModel>& models, const RttTable& rtt_s, int64_t updated_at);

// The page itself (HTML, CSS and script in one; no CDN), compiled into the binary.
const char* health_page_html();

}  // namespace bouquet::net::health
