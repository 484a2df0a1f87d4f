#include "net/dht_record.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fmt/core.h>

namespace bouquet::net {
namespace {

std::optional<core::ServerState> parse_state(const std::string& text) {
  for (auto state : {core::ServerState::joining, core::ServerState::online, core::ServerState::offline}) {
    if (core::to_string(state) == text) return state;
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_peer(const std::string& text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + static_cast<uint64_t>(digit);
  }
  return value;
}

}  // namespace

std::string dht_block_key(const std::string& model_id, uint32_t block) {
  return fmt::format("bouquet/v{}/{}/block/{}", kDhtRecordVersion, model_id, block);
}

std::string dht_models_key() { return fmt::format("bouquet/v{}/models", kDhtRecordVersion); }

std::string encode_dht_record(const DhtRecord& in) {
  const core::ServerRecord& r = in.record;
  nlohmann::json j = {
      {"v", kDhtRecordVersion},
      {"peer", r.peer.to_string()},
      {"address", r.address},
      {"span", {r.span.begin, r.span.end}},
      {"block", in.block},
      {"state", std::string(core::to_string(r.state))},
      {"throughput_rps", r.throughput_rps},
      {"inference_rps", r.inference_rps},
      {"cache_tokens_free", r.cache_tokens_free},
      {"model", r.model_id},
      {"model_blocks", in.model_blocks},
      {"fingerprint", in.fingerprint},
      {"version", r.version},
      {"adapters", r.adapters},
      {"expires_at", r.expires_at},
      {"announced_at", in.announced_unix_s},
      {"seq", in.seq},
  };
  return j.dump();
}

std::variant<DhtRecord, std::string> decode_dht_record(const std::string& bytes) {
  nlohmann::json j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::string("not a JSON object");
  if (!j.contains("v") || !j["v"].is_number_integer()) return std::string("no version field \"v\"");
  if (j["v"].get<int64_t>() != kDhtRecordVersion) {
    return fmt::format("record version {} (this build reads {})", j["v"].dump(), kDhtRecordVersion);
  }
  try {
    DhtRecord out;
    core::ServerRecord& r = out.record;
    auto peer = parse_peer(j.at("peer").get<std::string>());
    if (!peer) return std::string("field \"peer\" is not 1-16 lowercase hex digits");
    r.peer = core::PeerId{*peer};
    r.address = j.at("address").get<std::string>();
    if (r.address.empty()) return std::string("field \"address\" is empty");
    const auto& span = j.at("span");
    if (!span.is_array() || span.size() != 2) return std::string("field \"span\" is not [begin, end]");
    r.span = core::BlockSpan{span[0].get<uint32_t>(), span[1].get<uint32_t>()};
    if (r.span.empty()) return std::string("field \"span\" is empty");
    out.block = j.at("block").get<uint32_t>();
    auto state = parse_state(j.at("state").get<std::string>());
    if (!state) return fmt::format("field \"state\" is {}", j.at("state").dump());
    r.state = *state;
    r.throughput_rps = j.at("throughput_rps").get<double>();
    r.inference_rps = j.at("inference_rps").get<double>();
    if (!std::isfinite(r.throughput_rps) || r.throughput_rps < 0 || !std::isfinite(r.inference_rps) ||
        r.inference_rps < 0) {
      return std::string("throughput_rps or inference_rps is negative or not finite");
    }
    r.cache_tokens_free = j.at("cache_tokens_free").get<uint64_t>();
    r.model_id = j.at("model").get<std::string>();
    out.model_blocks = j.value("model_blocks", uint32_t{0});
    out.fingerprint = j.value("fingerprint", std::string());
    r.version = j.value("version", std::string());
    r.adapters = j.value("adapters", std::vector<std::string>{});
    const auto& expires = j.at("expires_at");
    if (!expires.is_number()) return std::string("field \"expires_at\" is not a number");
    r.expires_at = expires.get<double>();
    out.announced_unix_s = j.at("announced_at").get<double>();
    out.seq = j.value("seq", uint64_t{0});
    return out;
  } catch (const nlohmann::json::exception& e) {
    return fmt::format("bad field: {}", e.what());
  }
}

bool dht_record_newer(const DhtRecord& a, const DhtRecord& b) {
  if (a.announced_unix_s != b.announced_unix_s) return a.announced_unix_s > b.announced_unix_s;
  return a.seq > b.seq;
}

}  // namespace bouquet::net
