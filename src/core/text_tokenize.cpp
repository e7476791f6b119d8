// Tokenizer and token tables of text vectorization (see text_tokenize.h).
#include "text_tokenize.h"

namespace mh {
namespace {

inline bool is_ascii_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// ASCII punctuation: ! through /, : through @, [ through `, { through ~.
inline bool is_ascii_punct(unsigned char c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// Bytes of the UTF-8 sequence starting with lead byte c (1 for a stray byte).
inline size_t utf8_length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

}  // namespace

void text_tokens(const char* s, size_t n, const TextOptions& opt, std::string& scratch,
                 std::vector<std::pair<size_t, size_t>>& pieces, TokenList& out) {
  out.clear();
  scratch.clear();
  scratch.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (opt.strip_punct && is_ascii_punct(c)) continue;
    if (opt.lower && c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + ('a' - 'A'));
    scratch.push_back(static_cast<char>(c));
  }
  pieces.clear();
  const size_t m = scratch.size();
  switch (opt.split) {
    case TextSplit::None:
      pieces.emplace_back(0, m);
      break;
    case TextSplit::Whitespace: {
      size_t i = 0;
      while (i < m) {
        while (i < m && is_ascii_space(static_cast<unsigned char>(scratch[i]))) ++i;
        size_t start = i;
        while (i < m && !is_ascii_space(static_cast<unsigned char>(scratch[i]))) ++i;
        if (i > start) pieces.emplace_back(start, i - start);
      }
      break;
    }
    case TextSplit::Character: {
      size_t i = 0;
      while (i < m) {
        size_t len = utf8_length(static_cast<unsigned char>(scratch[i]));
        if (len > m - i) len = m - i;
        pieces.emplace_back(i, len);
        i += len;
      }
      break;
    }
  }
  if (opt.ngrams.empty()) {
    out.buf = scratch;
    out.spans = pieces;
    return;
  }
  const size_t k = pieces.size();
  for (int w : opt.ngrams) {
    const size_t width = static_cast<size_t>(w);
    if (width == 0 || width > k) continue;
    for (size_t i = 0; i + width <= k; ++i) {
      const size_t start = out.buf.size();
      for (size_t j = 0; j < width; ++j) {
        if (j) out.buf.push_back(' ');
        out.buf.append(scratch, pieces[i + j].first, pieces[i + j].second);
      }
      out.spans.emplace_back(start, out.buf.size() - start);
    }
  }
}

void TokenCounter::add(const TokenList& tokens, int64_t doc) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::string_view tok = tokens.at(t);
    key_.assign(tok.data(), tok.size());
    auto it = index_.find(key_);
    size_t i;
    if (it == index_.end()) {
      i = tokens_.size();
      index_.emplace(key_, i);
      tokens_.push_back(key_);
      counts_.push_back(0);
      doc_counts_.push_back(0);
      last_doc_.push_back(-1);
    } else {
      i = it->second;
    }
    counts_[i] += 1;
    if (last_doc_[i] != doc) {
      last_doc_[i] = doc;
      doc_counts_[i] += 1;
    }
  }
}

VocabularyIndex::VocabularyIndex(const std::vector<std::string_view>& tokens) {
  index_.reserve(tokens.size() * 2);
  for (size_t i = 0; i < tokens.size(); ++i) {
    index_.emplace(std::string(tokens[i]), static_cast<int64_t>(i));  // tokens are distinct
  }
}

int64_t VocabularyIndex::find(std::string_view token) {
  key_.assign(token.data(), token.size());
  auto it = index_.find(key_);
  return it == index_.end() ? -1 : it->second;
}

}  // namespace mh
