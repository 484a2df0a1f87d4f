#include "tokenizer/sentencepiece_tokenizer.h"

#include <fmt/core.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>
#include <stdexcept>

namespace bouquet::gpu {
namespace {

using PieceType = SentencePieceModel::PieceType;

std::string byte_piece(uint8_t byte) { return fmt::format("<0x{:02X}>", byte); }

// The byte a "<0xXX>" piece stands for, or -1.
int piece_byte(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece.back() != '>') return -1;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9')
      value |= c - '0';
    else if (c >= 'A' && c <= 'F')
      value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      value |= c - 'a' + 10;
    else
      return -1;
  }
  return value;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos)).append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceModel model, std::string source)
    : model_(std::move(model)), source_(std::move(source)) {
  const auto fail = [&](const std::string& what) { throw std::runtime_error(fmt::format("{}: {}", source_, what)); };
  const auto type = model_.trainer.model_type;
  if (type != SentencePieceModel::ModelType::bpe && type != SentencePieceModel::ModelType::unigram)
    fail("only BPE and unigram SentencePiece models are supported, not word or char models");
  if (model_.trainer.treat_whitespace_as_suffix) fail("treat_whitespace_as_suffix is not supported");
  if (model_.pieces.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) fail("too many pieces");

  std::vector<std::string> user_defined;
  min_score_ = std::numeric_limits<float>::max();
  // FLT_MIN, not lowest(): SentencePiece starts its maximum there, which matters for user-defined
  // pieces whose unigram score is derived from it.
  max_score_ = std::numeric_limits<float>::min();
  for (size_t i = 0; i < model_.pieces.size(); ++i) {
    const auto& piece = model_.pieces[i];
    const auto id = static_cast<int32_t>(i);
    if (piece.piece.empty()) fail(fmt::format("piece {} is empty", i));
    const bool segmentable =
        piece.type == PieceType::normal || piece.type == PieceType::user_defined || piece.type == PieceType::unused;
    if (!(segmentable ? pieces_ : reserved_).emplace(piece.piece, id).second)
      fail(fmt::format("piece '{}' is defined twice", piece.piece));
    if (piece.type == PieceType::user_defined) user_defined.push_back(piece.piece);
    if (piece.type == PieceType::unknown) {
      if (unk_id_ >= 0) fail("more than one <unk> piece");
      unk_id_ = id;
    }
    if (piece.type == PieceType::byte && !model_.trainer.byte_fallback)
      fail(fmt::format("byte piece '{}' in a model without byte_fallback", piece.piece));
    if (piece.type == PieceType::byte && piece_byte(piece.piece) < 0)
      fail(fmt::format("byte piece '{}' is not of the form <0xXX>", piece.piece));
    if (piece.type == PieceType::normal) {
      min_score_ = std::min(min_score_, piece.score);
      max_score_ = std::max(max_score_, piece.score);
    }
    if (segmentable) longest_piece_bytes_ = std::max(longest_piece_bytes_, piece.piece.size());
  }
  if (unk_id_ < 0) fail("no <unk> piece");
  for (int b = 0; b < 256; ++b) byte_ids_[b] = to_id(byte_piece(static_cast<uint8_t>(b)));
  user_defined_ = std::make_unique<PrefixMatcher>(std::move(user_defined));
  normalizer_ = std::make_unique<SentencePieceNormalizer>(model_.normalizer, *user_defined_, source_);
  bos_id = model_.trainer.bos_id >= 0 ? std::optional<TokenId>(model_.trainer.bos_id) : std::nullopt;
  eos_id = model_.trainer.eos_id >= 0 ? std::optional<TokenId>(model_.trainer.eos_id) : std::nullopt;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", file.string()));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return std::make_unique<SentencePieceTokenizer>(parse_sentencepiece_model(bytes.str(), file.string()), file.string());
}

int32_t SentencePieceTokenizer::to_id(std::string_view piece) const {
  if (const auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (const auto it = pieces_.find(piece); it != pieces_.end()) return it->second;
  return unk_id_;
}

std::optional<TokenId> SentencePieceTokenizer::piece_id(std::string_view piece) const {
  if (const auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (const auto it = pieces_.find(piece); it != pieces_.end()) return it->second;
  return std::nullopt;
}

std::vector<SentencePieceTokenizer::Segment> SentencePieceTokenizer::encode_bpe(std::string_view text) const {
  struct Symbol {
    int prev;
    int next;
    bool frozen;  // a user-defined piece never merges
    std::string_view piece;
  };
  struct Pair {
    int left;
    int right;
    float score;
    size_t size;
  };
  // Highest score first; among equals, the leftmost.
  const auto lower = [](const Pair& a, const Pair& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(lower)> agenda(lower);
  std::vector<Symbol> symbols;
  // Merged unused pieces are split back into the pieces they were merged from.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unmerge;

  const auto add_pair = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view merged(symbols[left].piece.data(), symbols[left].piece.size() + symbols[right].piece.size());
    const auto it = pieces_.find(merged);
    if (it == pieces_.end()) return;
    agenda.push(Pair{left, right, model_.pieces[it->second].score, merged.size()});
    if (type_of(it->second) == PieceType::unused) unmerge[merged] = {symbols[left].piece, symbols[right].piece};
  };

  for (std::string_view rest = text; !rest.empty();) {
    const auto [length, frozen] = user_defined_->match(rest);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back(Symbol{index - 1, rest.size() == length ? -1 : index + 1, frozen, rest.substr(0, length)});
    rest.remove_prefix(length);
  }
  if (symbols.empty()) return {};
  for (size_t i = 1; i < symbols.size(); ++i) add_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    // A pair whose symbols changed since it was queued is stale.
    if (left.piece.empty() || right.piece.empty() || left.piece.size() + right.piece.size() != top.size) continue;
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.piece = {};
    add_pair(left.prev, top.left);
    add_pair(top.left, left.next);
  }

  std::vector<Segment> out;
  std::function<void(std::string_view)> resegment = [&](std::string_view piece) {
    const int32_t id = to_id(piece);
    if (type_of(id) == PieceType::unused) {
      if (const auto it = unmerge.find(piece); it != unmerge.end()) {
        resegment(it->second.first);
        resegment(it->second.second);
        return;
      }
    }
    out.push_back(Segment{piece, id});
  };
  for (int i = 0; i != -1; i = symbols[i].next) resegment(symbols[i].piece);
  return out;
}

std::vector<SentencePieceTokenizer::Segment> SentencePieceTokenizer::encode_unigram(std::string_view text) const {
  struct Node {
    int32_t id = -1;
    float score = 0.0f;  // of the best path ending here
    int64_t starts_at = -1;
  };
  constexpr float kUnknownPenalty = 10.0f;
  const float unknown_score = min_score_ - kUnknownPenalty;
  const auto size = static_cast<int64_t>(text.size());
  std::vector<Node> best(text.size() + 1);
  // SentencePiece scores candidates in double and keeps each best path's score as a float; doing
  // the same keeps ties and near-ties resolved exactly as it resolves them.
  const auto offer = [&](int64_t end, int64_t start, double score, int32_t id) {
    const double candidate = score + static_cast<double>(best[start].score);
    Node& node = best[end];
    if (node.starts_at == -1 || candidate > static_cast<double>(node.score))
      node = Node{id, static_cast<float>(candidate), start};
  };
  for (int64_t start = 0; start < size;) {
    // Positions advance by whole characters, judged by their lead byte as SentencePiece does.
    static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    const int64_t one_char = std::min<int64_t>(size - start, kLengths[static_cast<uint8_t>(text[start]) >> 4]);
    bool has_single_char_piece = false;
    const int64_t longest = std::min<int64_t>(size - start, static_cast<int64_t>(longest_piece_bytes_));
    for (int64_t length = 1; length <= longest; ++length) {
      const auto it = pieces_.find(text.substr(start, length));
      if (it == pieces_.end()) continue;
      const int32_t id = it->second;
      if (type_of(id) == PieceType::unused) continue;
      // User-defined pieces get a bonus so that they always win.
      const double score = type_of(id) == PieceType::user_defined
                               ? static_cast<double>(static_cast<float>(length) * max_score_) - 0.1
                               : static_cast<double>(model_.pieces[id].score);
      offer(start + length, start, score, id);
      if (length == one_char) has_single_char_piece = true;
    }
    if (!has_single_char_piece) offer(start + one_char, start, unknown_score, unk_id_);
    start += one_char;
  }
  std::vector<Segment> out;
  for (int64_t end = size; end > 0;) {
    const Node& node = best[end];
    out.push_back(Segment{text.substr(node.starts_at, end - node.starts_at), node.id});
    end = node.starts_at;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<TokenId> SentencePieceTokenizer::encode(std::string_view text) const {
  const std::string normalized = normalizer_->normalize(text);
  const auto segments = model_.trainer.model_type == SentencePieceModel::ModelType::bpe ? encode_bpe(normalized)
                                                                                        : encode_unigram(normalized);
  std::vector<TokenId> ids;
  ids.reserve(segments.size());
  for (const auto& segment : segments) {
    if (segment.id == unk_id_ && model_.trainer.byte_fallback) {
      for (const char c : segment.piece) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    } else if (segment.id == unk_id_ && !ids.empty() && ids.back() == unk_id_) {
      continue;  // a run of unknown characters is one <unk>, as in SentencePiece
    } else {
      ids.push_back(segment.id);
    }
  }
  return ids;
}

std::string SentencePieceTokenizer::decode(const std::vector<TokenId>& ids) const {
  std::string text;
  std::string bytes;  // a run of byte pieces, decoded together once it ends
  const auto flush_bytes = [&] {
    for (std::string_view rest = bytes; !rest.empty();) {
      const size_t length = valid_utf8_length(rest);
      if (length == 0) {
        text.append("\xEF\xBF\xBD");
        rest.remove_prefix(1);
      } else {
        text.append(rest.substr(0, length));
        rest.remove_prefix(length);
      }
    }
    bytes.clear();
  };
  // The first piece that is not a control piece loses its leading space (the dummy prefix the
  // encoder added); a byte or unknown piece there means the text did not start with one. Models
  // that remove extra whitespace keep stripping while the text is still empty, as SentencePiece.
  bool first_piece = true;
  for (const TokenId id : ids) {
    if (id < 0 || id >= vocab_size()) continue;  // past the tokenizer's vocabulary: nothing to show
    const auto& piece = model_.pieces[id];
    if (piece.type == PieceType::byte) {
      bytes.push_back(static_cast<char>(piece_byte(piece.piece)));
      first_piece = false;
      continue;
    }
    flush_bytes();
    if (piece.type == PieceType::control) continue;
    const bool strip = first_piece || (model_.normalizer.remove_extra_whitespaces && text.empty());
    first_piece = false;
    if (piece.type == PieceType::unknown) {
      text.append(model_.trainer.unk_surface);
      continue;
    }
    std::string_view surface = piece.piece;
    if (strip && (model_.normalizer.add_dummy_prefix || model_.normalizer.remove_extra_whitespaces) &&
        surface.starts_with(kSpaceSymbol))
      surface.remove_prefix(kSpaceSymbol.size());
    text.append(replace_all(surface, kSpaceSymbol, " "));
  }
  flush_bytes();
  return text;
}

}  // namespace bouquet::gpu
