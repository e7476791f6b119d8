// Text vectorization's tokenizer (text_tokenize.h) against hand-worked
// token lists: standardization, the three splits, ngrams, counts and lookup.
#include <string>
#include <vector>

#include "test_util.h"
#include "text_tokenize.h"

namespace {

std::vector<std::string> tokens_of(const std::string& text, const mh::TextOptions& opt) {
  std::string scratch;
  std::vector<std::pair<size_t, size_t>> pieces;
  mh::TokenList out;
  mh::text_tokens(text.data(), text.size(), opt, scratch, pieces, out);
  std::vector<std::string> v;
  for (size_t i = 0; i < out.size(); ++i) v.emplace_back(out.at(i));
  return v;
}

TEST(TextTokenize, LowerAndStripAreAsciiOnlyAndWhitespaceSplitSkipsRuns) {
  mh::TextOptions opt;
  opt.lower = true;
  opt.strip_punct = true;
  // "\xc3\x89" is U+00C9 (E acute, upper case): kept as is, as TensorFlow's lower() keeps it
  const std::string text = "  Hello,\tW\xc3\x89RLD!!\n\r a-b \v\f{x}[y]~ ";
  EXPECT_EQ(tokens_of(text, opt), (std::vector<std::string>{"hello", "w\xc3\x89rld", "ab", "xy"}));
  opt.strip_punct = false;
  EXPECT_EQ(tokens_of("A.B", opt), (std::vector<std::string>{"a.b"}));
  EXPECT_TRUE(tokens_of(" \t\n", opt).empty());
}

TEST(TextTokenize, CharacterSplitKeepsUtf8CodePointsWhole) {
  mh::TextOptions opt;
  opt.split = mh::TextSplit::Character;
  // 1-, 2-, 3- and 4-byte code points: a, U+00E9, U+20AC, U+1F600
  const std::string text = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 ";
  EXPECT_EQ(tokens_of(text, opt),
            (std::vector<std::string>{"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", " "}));
  opt.split = mh::TextSplit::None;
  EXPECT_EQ(tokens_of("", opt), (std::vector<std::string>{""}));
}

TEST(TextTokenize, NgramsComeByWidthThenPosition) {
  mh::TextOptions opt;
  opt.ngrams = {2, 1, 4};
  EXPECT_EQ(tokens_of("a b c", opt), (std::vector<std::string>{"a b", "b c", "a", "b", "c"}));
}

TEST(TextTokenize, CountsAndDocumentCountsAndLookup) {
  mh::TextOptions opt;
  mh::TokenCounter counter;
  std::string scratch;
  std::vector<std::pair<size_t, size_t>> pieces;
  mh::TokenList toks;
  const std::vector<std::string> docs = {"x y x", "y z", "x"};
  for (size_t d = 0; d < docs.size(); ++d) {
    mh::text_tokens(docs[d].data(), docs[d].size(), opt, scratch, pieces, toks);
    counter.add(toks, static_cast<int64_t>(d));
  }
  ASSERT_EQ(counter.size(), 3u);
  EXPECT_EQ(counter.token(0), "x");
  EXPECT_EQ(counter.count(0), 3.0);
  EXPECT_EQ(counter.doc_count(0), 2.0);
  EXPECT_EQ(counter.token(1), "y");
  EXPECT_EQ(counter.count(1), 2.0);
  EXPECT_EQ(counter.doc_count(1), 2.0);
  EXPECT_EQ(counter.token(2), "z");
  EXPECT_EQ(counter.doc_count(2), 1.0);
  mh::VocabularyIndex index({"y", "x"});
  EXPECT_EQ(index.find("x"), 1);
  EXPECT_EQ(index.find("y"), 0);
  EXPECT_EQ(index.find("q"), -1);
}

}  // namespace
