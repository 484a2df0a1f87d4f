#include "net/dht/dht_directory.h"

#include "net/dht/identity.h"

#include <opendht.h>

#include <fmt/core.h>
#include <asio/post.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace bouquet::net {
namespace {

// One value type for every Bouquet value: its lifetime is the storage bound on every node.
constexpr dht::ValueType::Id kRecordTypeId = 0x6271;  // "bq"

dht::ValueType record_type(double lifetime_s) {
  auto lifetime = std::chrono::duration_cast<dht::duration>(std::chrono::duration<double>(lifetime_s));
  return dht::ValueType(kRecordTypeId, "bouquet.server_record", lifetime);
}

struct RawValue {
  uint32_t block = 0;
  dht::ValueType::Id type = 0;
  std::string bytes;
};

struct PendingLookup {
  std::mutex mutex;
  size_t remaining = 0;
  std::vector<RawValue> values;
};

}  // namespace

bool routine_dht_skip(const std::string& line) {
  return line.rfind("skipped an expired record", 0) == 0 || line.rfind("skipped a stale record", 0) == 0;
}

DhtDirectory::DhtDirectory(DhtDirectoryConfig config) : config_(std::move(config)) {
  if (!config_.log) config_.log = [](const std::string& line) { fmt::print(stderr, "dht: {}\n", line); };
  if (!(config_.record_lifetime_s > 0)) throw std::invalid_argument("dht: record lifetime must be > 0 s");
  const HostPort listen = parse_host_port(config_.listen, /*allow_port_zero=*/true);
  std::vector<HostPort> peers;
  for (const auto& peer : config_.initial_peers) peers.push_back(parse_host_port(peer));

  auto bind = dht::SockAddr::resolve(listen.host, std::to_string(listen.port));
  if (bind.empty()) throw std::invalid_argument(fmt::format("dht: cannot resolve listen address {}", config_.listen));
  runner_ = std::make_unique<dht::DhtRunner>();
  dht::DhtRunner::Config runner_config;
  runner_config.threaded = true;
  if (bind.front().getFamily() == AF_INET6) {
    runner_config.bind6 = bind.front();
  } else {
    runner_config.bind4 = bind.front();
    runner_config.bind6 = dht::SockAddr();  // IPv4 only: a bound IPv6 port would be unreported
  }
  try {
    runner_->run(runner_config, dht::DhtRunner::Context{});
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("dht: cannot listen on {}: {}", config_.listen, e.what()));
  }
  runner_->registerType(record_type(config_.record_lifetime_s));
  for (const auto& peer : peers) runner_->bootstrap(peer.host, std::to_string(peer.port));
}

DhtDirectory::~DhtDirectory() {
  if (runner_) runner_->join();
}

std::string DhtDirectory::address() const {
  const HostPort listen = parse_host_port(config_.listen, true);
  const bool v6 = listen.host.find(':') != std::string::npos;
  return HostPort{listen.host, runner_->getBoundPort(v6 ? AF_INET6 : AF_INET)}.to_string();
}

bool DhtDirectory::wait_connected(double timeout_s) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (runner_->getNodesStats(AF_INET).good_nodes + runner_->getNodesStats(AF_INET6).good_nodes == 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

double DhtDirectory::unix_now() const {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double DhtDirectory::now() const { return config_.clock ? config_.clock() : unix_now(); }

void DhtDirectory::skip(const std::string& why) {
  ++skipped_;
  config_.log(why);
}

void DhtDirectory::announce(const core::Announce& announce) {
  if (!config_.identity) throw std::logic_error("a DHT directory that announces needs an identity to sign with");
  this->announce(announce, *config_.identity);
}

void DhtDirectory::announce(const core::Announce& announce, const PeerIdentity& signer) {
  const core::ServerRecord& record = announce.record;
  if (record.span.empty() || record.model_id.empty()) {
    config_.log(
        fmt::format("not announcing a record with span {} and model '{}'", record.span.to_string(), record.model_id));
    return;
  }
  const double unix = unix_now();
  // The record's remaining lifetime carries over from the driver's clock to Unix time.
  double ttl_s = std::isfinite(record.expires_at) ? record.expires_at - now() : config_.record_lifetime_s;
  ttl_s = std::min(ttl_s, config_.record_lifetime_s);
  DhtRecord wire;
  wire.record = record;
  wire.record.expires_at = unix + ttl_s;
  wire.model_blocks = config_.model_blocks;
  wire.fingerprint = config_.fingerprint;
  wire.announced_unix_s = unix;
  wire.seq = ++seq_;
  for (uint32_t block = record.span.begin; block < record.span.end; ++block) {
    wire.block = block;
    const std::string bytes = encode_dht_record(wire, signer);
    dht::Value value(kRecordTypeId, dht::Blob(bytes.begin(), bytes.end()));
    ++*puts_in_flight_;
    runner_->put(dht::InfoHash::get(dht_block_key(record.model_id, block)), std::move(value),
                 [puts = puts_in_flight_](bool) { --*puts; });
  }
  const std::string index = nlohmann::json{
      {"v", kDhtRecordVersion},
      {"model", record.model_id},
      {"model_blocks", config_.model_blocks},
      {"expires_at",
       wire.record.expires_at}}.dump();
  ++*puts_in_flight_;
  runner_->put(dht::InfoHash::get(dht_models_key()), dht::Value(kRecordTypeId, dht::Blob(index.begin(), index.end())),
               [puts = puts_in_flight_](bool) { --*puts; });
}

void DhtDirectory::lookup(const core::DirectoryLookup& lookup, AnswerSink sink) {
  auto pending = std::make_shared<PendingLookup>();
  const uint32_t first = lookup.blocks.begin;
  const uint32_t count = lookup.blocks.size();
  if (count == 0) return sink(core::DirectoryAnswer{lookup.lookup_id, {}});
  pending->remaining = count;

  // Runs once, when the last block's get is done: filter and keep the newest per peer.
  auto finish = [this, lookup, pending, sink = std::move(sink)] {
    const double unix = unix_now();
    const double offset = now() - unix;
    std::map<core::PeerId, DhtRecord> newest;
    for (const RawValue& raw : pending->values) {
      const std::string where = fmt::format("model '{}' block {}", lookup.model_id, raw.block);
      if (raw.type != kRecordTypeId) {
        skip(fmt::format("skipped a value of foreign type {} under {}", raw.type, where));
        continue;
      }
      auto decoded = decode_dht_record(raw.bytes, &verified_);
      if (auto* why = std::get_if<std::string>(&decoded)) {
        skip(fmt::format("skipped a malformed record under {}: {}", where, *why));
        continue;
      }
      DhtRecord& rec = std::get<DhtRecord>(decoded);
      const std::string who = fmt::format("record of peer {} under {}", rec.record.peer.to_string(), where);
      if (rec.record.model_id != lookup.model_id) {
        skip(fmt::format("skipped a foreign {}: model '{}'", who, rec.record.model_id));
      } else if (rec.block != raw.block || !rec.record.span.contains(raw.block)) {
        skip(fmt::format("skipped a {}: claims block {} with span {}", who, rec.block, rec.record.span.to_string()));
      } else if (!config_.fingerprint.empty() && !rec.fingerprint.empty() && rec.fingerprint != config_.fingerprint) {
        skip(fmt::format("skipped a foreign {}: fingerprint {} is not {}", who, rec.fingerprint, config_.fingerprint));
      } else if (rec.record.expires_at <= unix) {
        skip(fmt::format("skipped an expired {}: expired {:.1f} s ago", who, unix - rec.record.expires_at));
      } else {
        auto [it, inserted] = newest.try_emplace(rec.record.peer, rec);
        if (inserted) continue;
        const bool same = rec.announced_unix_s == it->second.announced_unix_s && rec.seq == it->second.seq;
        if (same) continue;
        const bool newer = dht_record_newer(rec, it->second);
        skip(fmt::format("skipped a stale record of peer {} (span {}, superseded by span {})",
                         rec.record.peer.to_string(),
                         newer ? it->second.record.span.to_string() : rec.record.span.to_string(),
                         newer ? rec.record.span.to_string() : it->second.record.span.to_string()));
        if (newer) it->second = rec;
      }
    }
    core::DirectoryAnswer answer{lookup.lookup_id, {}};
    for (auto& [peer, rec] : newest) {
      rec.record.expires_at += offset;
      answer.records.push_back(std::move(rec.record));
    }
    sink(std::move(answer));
  };
  auto shared_finish = std::make_shared<decltype(finish)>(std::move(finish));

  for (uint32_t block = first; block < first + count; ++block) {
    runner_->get(
        dht::InfoHash::get(dht_block_key(lookup.model_id, block)),
        [pending, block](const std::vector<std::shared_ptr<dht::Value>>& values) {
          std::lock_guard lock(pending->mutex);
          for (const auto& v : values) {
            pending->values.push_back(RawValue{block, v->type, std::string(v->data.begin(), v->data.end())});
          }
          return true;
        },
        [pending, shared_finish](bool) {
          bool last = false;
          {
            std::lock_guard lock(pending->mutex);
            last = --pending->remaining == 0;
          }
          if (last) (*shared_finish)();
        });
  }
}

void DhtDirectory::lookup(const core::DirectoryLookup& lookup, asio::any_io_executor executor, AnswerSink sink) {
  this->lookup(lookup, [executor, sink = std::move(sink)](core::DirectoryAnswer answer) mutable {
    asio::post(executor, [sink, answer = std::move(answer)]() mutable { sink(std::move(answer)); });
  });
}

core::DirectoryAnswer DhtDirectory::lookup_now(const core::DirectoryLookup& lookup) {
  auto promise = std::make_shared<std::promise<core::DirectoryAnswer>>();
  auto future = promise->get_future();
  this->lookup(lookup, [promise](core::DirectoryAnswer answer) { promise->set_value(std::move(answer)); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    throw std::runtime_error(fmt::format("dht: no answer within 30 s looking up model '{}'", lookup.model_id));
  }
  return future.get();
}

std::vector<DhtModelEntry> DhtDirectory::models_now() {
  auto promise = std::make_shared<std::promise<void>>();
  auto values = std::make_shared<std::vector<std::string>>();
  auto mutex = std::make_shared<std::mutex>();
  runner_->get(
      dht::InfoHash::get(dht_models_key()),
      [values, mutex](const std::vector<std::shared_ptr<dht::Value>>& found) {
        std::lock_guard lock(*mutex);
        for (const auto& v : found) {
          if (v->type == kRecordTypeId) values->emplace_back(v->data.begin(), v->data.end());
        }
        return true;
      },
      [promise](bool) { promise->set_value(); });
  if (promise->get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    throw std::runtime_error("dht: no answer within 30 s reading the model index");
  }
  const double unix = unix_now();
  std::map<std::string, uint32_t> models;
  std::lock_guard lock(*mutex);
  for (const auto& bytes : *values) {
    auto decoded = decode_dht_model_index(bytes);
    if (auto* why = std::get_if<std::string>(&decoded)) {
      skip(fmt::format("skipped a malformed entry of the model index: {}", *why));
      continue;
    }
    const DhtModelIndexEntry& entry = std::get<DhtModelIndexEntry>(decoded);
    if (entry.expires_at <= unix) continue;
    const uint32_t blocks = entry.model_blocks;
    auto& known = models[entry.model_id];
    known = std::max(known, blocks);
  }
  std::vector<DhtModelEntry> out;
  for (const auto& [name, blocks] : models) out.push_back(DhtModelEntry{name, blocks});
  return out;
}

}  // namespace bouquet::net
