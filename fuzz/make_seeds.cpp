// Writes the seed corpora of the harnesses that start from structured bytes (fuzz/README.md):
//   build-fuzz/fuzz/fuzz_make_seeds fuzz/corpus
// wire_decode: one encoded message of every type, with and without compression; frame_reader:
// the same framed, back to back; dht_record: records as servers announce them.
#include <filesystem>
#include <fstream>
#include <string>

#include "core/rng.h"
#include "core/wire.h"
#include "net/dht/dht_record.h"
#include "net/dht/identity.h"
#include "net/rpc/frame.h"
#include "tests/core/support/random_messages.h"

namespace fs = std::filesystem;
using namespace bouquet;

namespace {

void write(const fs::path& path, const void* data, size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const fs::path out = argv[1];
  core::Rng rng(25);
  int n = 0;
  std::vector<uint8_t> stream;
  for (auto compression : {std::optional<core::Compression>{}, std::optional{core::Compression::int8_blockwise}}) {
    for (const core::Message& m : test::random_messages(rng, compression)) {
      const auto bytes = core::encode(m);
      write(out / "wire_decode" / ("seed-" + std::to_string(n++)), bytes.data(), bytes.size());
      const auto frame = net::encode_frame(m);
      stream.insert(stream.end(), frame.begin(), frame.end());
    }
  }
  write(out / "frame_reader" / "seed-all-types", stream.data(), stream.size());
  const net::PeerIdentity seeder = net::PeerIdentity::generate();
  for (uint32_t block : {0u, 3u}) {
    net::DhtRecord r;
    r.record.peer = seeder.peer_id();
    r.record.address = "127.0.0.1:7001";
    r.record.model_id = "tiny-llama@abc123";
    r.record.span = core::BlockSpan{0, 4};
    r.record.inference_rps = 250;
    r.record.throughput_rps = 1200;
    r.record.cache_tokens_free = 8192;
    r.record.expires_at = 1.8e9;
    r.block = block;
    r.model_blocks = 8;
    r.fingerprint = "abc123";
    r.announced_unix_s = 1.8e9 - 120;
    r.seq = block;
    const std::string text = net::encode_dht_record(r, seeder);
    write(out / "dht_record" / ("seed-" + std::to_string(block)), text.data(), text.size());
  }
  return 0;
}
