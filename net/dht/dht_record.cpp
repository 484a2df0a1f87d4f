#include "net/dht/dht_record.h"

#include "net/dht/identity.h"
#include "net/rpc/address.h"

#include <nlohmann/json.hpp>

#include <fmt/core.h>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string_view>

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

// A field that is there but holds the wrong kind or size of value; decode turns it into its reason.
struct BadField {
  std::string why;
};

// An integer in [0, max]. nlohmann's get<uint32_t> converts a float by a plain cast (undefined
// behaviour beyond the range) and wraps negatives, so a record from anyone is checked first.
uint64_t integer_field(const nlohmann::json& value, std::string_view name, uint64_t max) {
  if (!value.is_number_integer()) {
    throw BadField{fmt::format("field \"{}\" is {}, not an integer", name, value.dump())};
  }
  const bool negative = !value.is_number_unsigned() && value.get<int64_t>() < 0;
  if (negative || value.get<uint64_t>() > max) {
    throw BadField{fmt::format("field \"{}\" is {}, outside [0, {}]", name, value.dump(), max)};
  }
  return value.get<uint64_t>();
}

uint32_t block_field(const nlohmann::json& value, std::string_view name) {
  return static_cast<uint32_t>(integer_field(value, name, kDhtMaxModelBlocks));
}

// A finite number in [lo, hi].
double number_field(const nlohmann::json& value, std::string_view name, double lo, double hi) {
  if (!value.is_number()) throw BadField{fmt::format("field \"{}\" is {}, not a number", name, value.dump())};
  const double number = value.get<double>();
  if (!std::isfinite(number) || number < lo || number > hi) {
    throw BadField{fmt::format("field \"{}\" is {}, outside [{:g}, {:g}]", name, value.dump(), lo, hi)};
  }
  return number;
}

// Unix seconds: not before 1970, not past the year ~5000 (an "expires never" is a forged record).
constexpr double kMaxUnixS = 1e11;
// A token rate no hardware reaches; larger is an announcement nobody should rank by.
constexpr double kMaxRps = 1e12;
constexpr double kMaxStepS = 1e6;
constexpr double kMaxRowsAhead = 1e9;  // an announced step time beyond 11 days is a lie

}  // namespace

std::string dht_block_key(const std::string& model_id, uint32_t block) {
  return fmt::format("bouquet/v{}/{}/block/{}", kDhtRecordVersion, model_id, block);
}

std::string dht_models_key() { return fmt::format("bouquet/v{}/models", kDhtRecordVersion); }

std::string encode_dht_record(const DhtRecord& in, const PeerIdentity& signer) {
  const core::ServerRecord& r = in.record;
  if (r.peer != signer.peer_id()) {
    throw std::logic_error(fmt::format("a record of peer {} signed by the key of peer {}", r.peer.to_string(),
                                       signer.peer_id().to_string()));
  }
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
      {"load",
       {{"active_sessions", r.load.active_sessions},
        {"step_s", r.load.step_s},
        {"max_batch", r.load.max_batch},
        {"rows_ahead", r.load.rows_ahead}}},
      {"model", r.model_id},
      {"model_blocks", in.model_blocks},
      {"fingerprint", in.fingerprint},
      {"version", r.version},
      {"adapters", r.adapters},
      {"expires_at", r.expires_at},
      {"announced_at", in.announced_unix_s},
      {"seq", in.seq},
      {"key", signer.public_key_hex()},
  };
  j["sig"] = signer.sign(j.dump());
  return j.dump();
}

bool VerifiedRecords::contains(const std::string& signature, const std::string& signed_bytes) const {
  std::lock_guard lock(mutex_);
  auto it = signed_by_signature_.find(signature);
  const bool hit = it != signed_by_signature_.end() && it->second == signed_bytes;
  hits_ += hit ? 1 : 0;
  return hit;
}

void VerifiedRecords::insert(const std::string& signature, const std::string& signed_bytes) {
  std::lock_guard lock(mutex_);
  if (capacity_ == 0 || !signed_by_signature_.emplace(signature, signed_bytes).second) return;
  order_.push_back(signature);
  if (order_.size() > capacity_) {
    signed_by_signature_.erase(order_.front());
    order_.pop_front();
  }
}

size_t VerifiedRecords::size() const {
  std::lock_guard lock(mutex_);
  return signed_by_signature_.size();
}

uint64_t VerifiedRecords::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

std::variant<DhtRecord, std::string> decode_dht_record(const std::string& bytes, VerifiedRecords* verified) {
  nlohmann::json j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::string("not a JSON object");
  if (!j.contains("v") || !j["v"].is_number_integer()) return std::string("no version field \"v\"");
  if (j["v"].get<int64_t>() != kDhtRecordVersion) {
    return fmt::format("record version {} (this build reads {})", j["v"].dump(), kDhtRecordVersion);
  }
  if (!j.contains("key") || !j["key"].is_string() || !j.contains("sig") || !j["sig"].is_string()) {
    return std::string("unsigned: no \"key\" and \"sig\"");
  }
  const std::string signature = j["sig"].get<std::string>();
  j.erase("sig");
  try {
    DhtRecord out;
    core::ServerRecord& r = out.record;
    auto peer = parse_peer(j.at("peer").get<std::string>());
    if (!peer) return std::string("field \"peer\" is not 1-16 lowercase hex digits");
    r.peer = core::PeerId{*peer};
    out.public_key = j["key"].get<std::string>();
    r.address = j.at("address").get<std::string>();
    try {
      parse_host_port(r.address, /*allow_port_zero=*/false);  // a port in [1, 65535], a host
    } catch (const std::invalid_argument& e) {
      return fmt::format("field \"address\": {}", e.what());
    }
    const auto& span = j.at("span");
    if (!span.is_array() || span.size() != 2) return std::string("field \"span\" is not [begin, end]");
    r.span = core::BlockSpan{block_field(span[0], "span[0]"), block_field(span[1], "span[1]")};
    if (r.span.empty()) return std::string("field \"span\" is empty");
    out.block = block_field(j.at("block"), "block");
    auto state = parse_state(j.at("state").get<std::string>());
    if (!state) return fmt::format("field \"state\" is {}", j.at("state").dump());
    r.state = *state;
    r.throughput_rps = number_field(j.at("throughput_rps"), "throughput_rps", 0, kMaxRps);
    r.inference_rps = number_field(j.at("inference_rps"), "inference_rps", 0, kMaxRps);
    r.cache_tokens_free =
        integer_field(j.at("cache_tokens_free"), "cache_tokens_free", std::numeric_limits<uint64_t>::max());
    if (j.contains("load")) {  // absent in records of servers without it: no load known
      const auto& load = j.at("load");
      if (!load.is_object()) return std::string("field \"load\" is not an object");
      r.load.active_sessions = static_cast<uint32_t>(
          integer_field(load.at("active_sessions"), "load.active_sessions", std::numeric_limits<uint32_t>::max()));
      r.load.step_s = number_field(load.at("step_s"), "load.step_s", 0, kMaxStepS);
      r.load.max_batch = static_cast<uint32_t>(
          integer_field(load.at("max_batch"), "load.max_batch", std::numeric_limits<uint32_t>::max()));
      if (r.load.max_batch == 0) return std::string("field \"load.max_batch\" is 0");
      r.load.rows_ahead = number_field(load.at("rows_ahead"), "load.rows_ahead", 0, kMaxRowsAhead);
    }
    r.model_id = j.at("model").get<std::string>();
    if (j.contains("model_blocks")) out.model_blocks = block_field(j["model_blocks"], "model_blocks");
    if (out.model_blocks != 0 && r.span.end > out.model_blocks) {
      return fmt::format("field \"span\" is {} but the model has {} blocks", r.span.to_string(), out.model_blocks);
    }
    out.fingerprint = j.value("fingerprint", std::string());
    r.version = j.value("version", std::string());
    r.adapters = j.value("adapters", std::vector<std::string>{});
    r.expires_at = number_field(j.at("expires_at"), "expires_at", 0, kMaxUnixS);
    out.announced_unix_s = number_field(j.at("announced_at"), "announced_at", 0, kMaxUnixS);
    if (j.contains("seq")) out.seq = integer_field(j["seq"], "seq", std::numeric_limits<uint64_t>::max());
    // Checked last, so that every field's checks stay in reach of a fuzzer (which cannot sign).
    if (r.peer != PeerIdentity::peer_id_of_key(out.public_key)) {
      return fmt::format("field \"peer\" is {}, not the id of the record's key", r.peer.to_string());
    }
    const std::string signed_bytes = j.dump();  // "key" included
    if (verified && verified->contains(signature, signed_bytes)) return out;
    if (!PeerIdentity::verify(out.public_key, signed_bytes, signature)) {
      return std::string("field \"sig\" is not the key's signature of the record");
    }
    if (verified) verified->insert(signature, signed_bytes);
    return out;
  } catch (const BadField& e) {
    return e.why;
  } catch (const nlohmann::json::exception& e) {
    return fmt::format("bad field: {}", e.what());
  }
}

std::variant<DhtModelIndexEntry, std::string> decode_dht_model_index(const std::string& bytes) {
  nlohmann::json j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::string("not a JSON object");
  if (!j.contains("v") || !j["v"].is_number_integer() || j["v"].get<int64_t>() != kDhtRecordVersion) {
    return fmt::format("record version {} (this build reads {})", j.value("v", nlohmann::json()).dump(),
                       kDhtRecordVersion);
  }
  try {
    DhtModelIndexEntry out;
    out.model_id = j.at("model").get<std::string>();
    if (j.contains("model_blocks")) out.model_blocks = block_field(j["model_blocks"], "model_blocks");
    out.expires_at = number_field(j.at("expires_at"), "expires_at", 0, kMaxUnixS);
    return out;
  } catch (const BadField& e) {
    return e.why;
  } catch (const nlohmann::json::exception& e) {
    return fmt::format("bad field: {}", e.what());
  }
}

bool dht_record_newer(const DhtRecord& a, const DhtRecord& b) {
  return core::announced_later(core::Announcement{a.announced_unix_s, a.seq},
                               core::Announcement{b.announced_unix_s, b.seq});
}

}  // namespace bouquet::net
