// Text vectorization's tokenizer and token tables (Keras's TextVectorization
// with TensorFlow's string ops): standardize, split, ngrams; counting tokens
// for adapt() and looking them up in a vocabulary. Plain C++ over UTF-8
// bytes, no R headers (glue: src/glue_text.cpp).
//
// Semantics (those of TensorFlow's ops that Keras calls):
//   lower        tf.strings.lower() without an encoding: ASCII A-Z -> a-z
//                only (other bytes, so every non-ASCII character, unchanged)
//   strip_punct  removes the ASCII punctuation !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
//                (Keras's regular expression; UTF-8 continuation bytes are
//                never ASCII, so byte-wise removal is exact)
//   whitespace   tf.strings.split(): runs of ASCII whitespace (space, \t, \n,
//                \v, \f, \r) separate tokens; none at either end
//   character    tf.strings.unicode_split(): one token per UTF-8 code point
//                (the caller checks the text is valid UTF-8)
//   none         the whole (standardized) text is one token
//   ngrams       tf.strings.ngrams(separator = " "): for each width in the
//                given order, the ngrams in position order; widths longer
//                than the text give none
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mh {

enum class TextSplit { None = 0, Whitespace = 1, Character = 2 };

struct TextOptions {
  bool lower = false;
  bool strip_punct = false;
  TextSplit split = TextSplit::Whitespace;
  std::vector<int> ngrams;  // empty: the split tokens themselves
};

// The tokens of one text: byte spans of `buf`.
struct TokenList {
  std::string buf;
  std::vector<std::pair<size_t, size_t>> spans;  // (offset, length) in buf
  void clear() {
    buf.clear();
    spans.clear();
  }
  size_t size() const { return spans.size(); }
  std::string_view at(size_t i) const { return std::string_view(buf).substr(spans[i].first, spans[i].second); }
};

// Tokens of the text s[0, n) into `out` (cleared first). `scratch` holds the
// standardized text and `pieces` the split spans between calls (reused to
// avoid allocations).
void text_tokens(const char* s, size_t n, const TextOptions& opt, std::string& scratch,
                 std::vector<std::pair<size_t, size_t>>& pieces, TokenList& out);

// Counts of tokens over documents, distinct tokens in order of first
// appearance: occurrences and number of documents containing each.
class TokenCounter {
 public:
  // Adds the tokens of document `doc` (documents are added in increasing order).
  void add(const TokenList& tokens, int64_t doc);
  size_t size() const { return tokens_.size(); }
  const std::string& token(size_t i) const { return tokens_[i]; }
  double count(size_t i) const { return counts_[i]; }
  double doc_count(size_t i) const { return doc_counts_[i]; }

 private:
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::string> tokens_;
  std::vector<double> counts_, doc_counts_;
  std::vector<int64_t> last_doc_;
  std::string key_;
};

// A vocabulary: token -> its 0-based position, or -1.
class VocabularyIndex {
 public:
  explicit VocabularyIndex(const std::vector<std::string_view>& tokens);
  int64_t find(std::string_view token);

 private:
  std::unordered_map<std::string, int64_t> index_;
  std::string key_;
};

}  // namespace mh
