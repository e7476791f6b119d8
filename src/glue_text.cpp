// Glue of text vectorization's tokenizer (src/core/text_tokenize.h): R's
// character vectors (UTF-8 or ASCII CHARSXPs; R/layer-text-vectorization.R
// converts and validates them first) in, counts or indices out. The texts'
// bytes are read in the main thread (no threads here: the work is hashing).
#include <Rcpp.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "core/text_tokenize.h"

namespace {

mh::TextOptions text_options(bool lower, bool strip_punct, int split, const Rcpp::IntegerVector& ngrams) {
  mh::TextOptions opt;
  opt.lower = lower;
  opt.strip_punct = strip_punct;
  opt.split = split == 0 ? mh::TextSplit::None : split == 1 ? mh::TextSplit::Whitespace : mh::TextSplit::Character;
  for (int w : ngrams) opt.ngrams.push_back(w);
  return opt;
}

std::string_view text_at(SEXP texts, R_xlen_t i) {
  SEXP s = STRING_ELT(texts, i);
  return std::string_view(CHAR(s), static_cast<size_t>(LENGTH(s)));
}

}  // namespace

// adapt()'s counts over `texts` (one document each): list(values = the
// distinct tokens in order of first appearance, counts, doc_counts, n_docs).
// [[Rcpp::export]]
Rcpp::List cpp_text_count(SEXP texts, bool lower, bool strip_punct, int split, Rcpp::IntegerVector ngrams) {
  if (TYPEOF(texts) != STRSXP) Rcpp::stop("texts must be a character vector");
  const mh::TextOptions opt = text_options(lower, strip_punct, split, ngrams);
  const R_xlen_t n = Rf_xlength(texts);
  mh::TokenCounter counter;
  mh::TokenList tokens;
  std::string scratch;
  std::vector<std::pair<size_t, size_t>> pieces;
  for (R_xlen_t i = 0; i < n; ++i) {
    std::string_view t = text_at(texts, i);
    mh::text_tokens(t.data(), t.size(), opt, scratch, pieces, tokens);
    counter.add(tokens, static_cast<int64_t>(i));
  }
  const R_xlen_t k = static_cast<R_xlen_t>(counter.size());
  Rcpp::CharacterVector values(k);
  Rcpp::NumericVector counts(k), doc_counts(k);
  for (R_xlen_t j = 0; j < k; ++j) {
    const std::string& tok = counter.token(static_cast<size_t>(j));
    SET_STRING_ELT(values, j, Rf_mkCharLenCE(tok.data(), static_cast<int>(tok.size()), CE_UTF8));
    counts[j] = counter.count(static_cast<size_t>(j));
    doc_counts[j] = counter.doc_count(static_cast<size_t>(j));
  }
  return Rcpp::List::create(Rcpp::Named("values") = values, Rcpp::Named("counts") = counts,
                            Rcpp::Named("doc_counts") = doc_counts,
                            Rcpp::Named("n_docs") = static_cast<double>(n));
}

// The vocabulary indices of the tokens of `texts` (0-based): a token at
// position p of `vocabulary` -> token_start + p; the empty token (the mask)
// -> mask_index (NA_integer_: not counted); any other token -> oov_index.
// seq_len >= 0: an integer matrix (texts, seq_len) padded with 0 / truncated;
// seq_len == -1: padded to the longest text; seq_len == -2: list(index =
// flat indices (NA for masked tokens) in text order, lens = tokens per text).
// [[Rcpp::export]]
SEXP cpp_text_index(SEXP texts, bool lower, bool strip_punct, int split, Rcpp::IntegerVector ngrams,
                    SEXP vocabulary, int token_start, int oov_index, int mask_index, int seq_len) {
  if (TYPEOF(texts) != STRSXP || TYPEOF(vocabulary) != STRSXP) Rcpp::stop("texts and vocabulary must be character");
  const mh::TextOptions opt = text_options(lower, strip_punct, split, ngrams);
  std::vector<std::string_view> vocab(static_cast<size_t>(Rf_xlength(vocabulary)));
  for (size_t j = 0; j < vocab.size(); ++j) vocab[j] = text_at(vocabulary, static_cast<R_xlen_t>(j));
  mh::VocabularyIndex index(vocab);
  const R_xlen_t n = Rf_xlength(texts);
  std::vector<int> flat;
  std::vector<int> lens(static_cast<size_t>(n));
  mh::TokenList tokens;
  std::string scratch;
  std::vector<std::pair<size_t, size_t>> pieces;
  for (R_xlen_t i = 0; i < n; ++i) {
    std::string_view t = text_at(texts, i);
    mh::text_tokens(t.data(), t.size(), opt, scratch, pieces, tokens);
    size_t keep = tokens.size();
    if (seq_len >= 0 && keep > static_cast<size_t>(seq_len)) keep = static_cast<size_t>(seq_len);
    lens[static_cast<size_t>(i)] = static_cast<int>(tokens.size());
    for (size_t t2 = 0; t2 < keep; ++t2) {
      std::string_view tok = tokens.at(t2);
      int v;
      if (tok.empty()) {
        v = mask_index;
      } else {
        const int64_t p = index.find(tok);
        v = p < 0 ? oov_index : static_cast<int>(token_start + p);
      }
      flat.push_back(v);
    }
  }
  if (seq_len == -2) {
    Rcpp::IntegerVector idx(flat.begin(), flat.end());
    Rcpp::IntegerVector ln(lens.begin(), lens.end());
    return Rcpp::List::create(Rcpp::Named("index") = idx, Rcpp::Named("lens") = ln);
  }
  int width = seq_len;
  if (width < 0) {
    width = 0;
    for (int l : lens) width = std::max(width, l);
  }
  Rcpp::IntegerMatrix out(static_cast<int>(n), width);  // zero-filled
  int* o = out.begin();
  size_t at = 0;
  for (R_xlen_t i = 0; i < n; ++i) {
    const size_t k = std::min(static_cast<size_t>(lens[static_cast<size_t>(i)]), static_cast<size_t>(width));
    for (size_t t2 = 0; t2 < k; ++t2) o[i + static_cast<R_xlen_t>(t2) * n] = flat[at + t2];
    at += seq_len >= 0 ? k : static_cast<size_t>(lens[static_cast<size_t>(i)]);
  }
  return out;
}
