// Writes the seed corpora of the harnesses that start from structured bytes (fuzz/README.md):
//   build-fuzz/fuzz/fuzz_make_seeds fuzz/corpus
// wire_decode: one encoded message of every type, with and without compression; frame_reader:
// the same framed, back to back; dht_record: records as servers announce them; tokenizer_json,
// sentencepiece_model, safetensors_header: small files of each style the readers accept, written
// with the project's own writers (gguf_file's seeds come from llama.cpp's gguf-py instead:
// fuzz/make_gguf_seeds.py).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "core/wire.h"
#include "gpu/safetensors.h"
#include "net/dht/dht_record.h"
#include "net/dht/identity.h"
#include "net/rpc/frame.h"
#include "tests/core/support/random_messages.h"
#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/sentencepiece_model.h"

namespace fs = std::filesystem;
using namespace bouquet;

namespace {

void write(const fs::path& path, const void* data, size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

void write_text(const fs::path& path, const std::string& text) { write(path, text.data(), text.size()); }

using Json = nlohmann::json;

// Byte-level BPE: the 256 byte characters, merges of " t", "he", " the", added tokens, and the
// pre-tokenizer and post-processor of each style (GPT-2, Llama 3, BLOOM).
Json bpe_config(Json pre_tokenizer, Json post_processor) {
  const auto& ch = gpu::byte_to_unicode();
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ch[b]] = b;
  const std::string sp = ch[' '];
  vocab[sp + "t"] = 256;
  vocab["he"] = 257;
  vocab[sp + "the"] = 258;
  Json added = Json::array();
  int id = 259;
  for (const char* token : {"<|begin_of_text|>", "<|endoftext|>", "<tool>"}) {
    added.push_back({{"id", id++},
                     {"content", token},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", std::string(token) != "<tool>"}});
  }
  return Json{{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", std::move(pre_tokenizer)},
              {"post_processor", std::move(post_processor)},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", Json::array({sp + " t", "h e", sp + "t he"})}}}};
}

void write_tokenizer_json_seeds(const fs::path& dir) {
  const Json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const Json split = {{"type", "Split"},
                      {"pattern", {{"Regex", R"((?i:'s|'t|'re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|\s+(?!\S)|\s+)"}}},
                      {"behavior", "Isolated"},
                      {"invert", false}};
  Json no_regex = byte_level;
  no_regex["use_regex"] = false;
  const Json sequence = {{"type", "Sequence"}, {"pretokenizers", Json::array({split, no_regex})}};
  const Json bos_template = {
      {"type", "TemplateProcessing"},
      {"single", Json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", Json::array()},
      {"special_tokens",
       {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {259}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  write_text(dir / "seed-gpt2", bpe_config(byte_level, nullptr).dump());
  write_text(dir / "seed-llama3", bpe_config(sequence, bos_template).dump());
  write_text(dir / "seed-bloom", bpe_config(no_regex, {{"type", "ByteLevel"}, {"trim_offsets", false}}).dump());
}

// SentencePiece models as tokenizer.model holds them: BPE with byte fallback (Llama 2's kind) and
// unigram, with control, user-defined and unused pieces.
void write_sentencepiece_seeds(const fs::path& dir) {
  using Model = gpu::SentencePieceModel;
  for (const auto type : {Model::ModelType::bpe, Model::ModelType::unigram}) {
    Model model;
    model.trainer.model_type = type;
    model.trainer.byte_fallback = type == Model::ModelType::bpe;
    model.pieces = {{"<unk>", 0, Model::PieceType::unknown},
                    {"<s>", 0, Model::PieceType::control},
                    {"</s>", 0, Model::PieceType::control}};
    if (model.trainer.byte_fallback) {
      for (int b = 0; b < 256; b += 17) {
        model.pieces.push_back({fmt::format("<0x{:02X}>", b), 0, Model::PieceType::byte});
      }
    }
    float score = -1;
    for (const char* piece :
         {"\xE2\x96\x81", "\xE2\x96\x81t", "he", "\xE2\x96\x81the", "h", "e", "t", "a", "\xE6\x97\xA5"}) {
      model.pieces.push_back({piece, score, Model::PieceType::normal});
      score -= 1;
    }
    model.pieces.push_back({"<tool>", 0, Model::PieceType::user_defined});
    model.pieces.push_back({"<pad>", 0, Model::PieceType::unused});
    model.trainer.vocab_size = static_cast<int32_t>(model.pieces.size());
    model.normalizer.name = "identity";
    const std::string bytes = gpu::serialize_sentencepiece_model(model);
    write_text(dir / (type == Model::ModelType::bpe ? "seed-bpe" : "seed-unigram"), bytes);
  }
}

void write_safetensors_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  std::string f32(4 * 6, '\0');
  const float values[6] = {1, -2, 0.5f, 3e38f, -0.0f, 7};
  std::memcpy(f32.data(), values, sizeof values);
  gpu::write_safetensors_file(dir / "seed-mixed",
                              {{"model.embed_tokens.weight", gpu::DType::F32, {2, 3}, f32},
                               {"model.norm.weight", gpu::DType::BF16, {4}, std::string(8, '\x3f')},
                               {"scales", gpu::DType::I8, {2, 2}, std::string("\x01\xff\x7f\x80", 4)},
                               {"empty", gpu::DType::F16, {0, 5}, ""}},
                              {{"format", "pt"}});
  gpu::write_safetensors_file(dir / "seed-bare", {{"w", gpu::DType::F64, {1}, std::string(8, '\0')}}, {});
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
  write_tokenizer_json_seeds(out / "tokenizer_json");
  write_sentencepiece_seeds(out / "sentencepiece_model");
  write_safetensors_seeds(out / "safetensors_header");
  return 0;
}
