// Sectioned documents of prose and their key terms; see document_sections.h.
#include "engine/tokenizer/document_sections.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace edgeinf {
namespace {

// Capitalised words that open sentences or name what every section shares: never key terms.
const std::set<std::string>& common_capitalised() {
  static const std::set<std::string> words = {
      "Again",      "Also",    "Amen",         "And",   "Because", "Before",    "Behold", "Being", "Blessed", "Christ",
      "Come",       "Even",    "Father",       "From",  "Ghost",   "Have",      "Hear",   "Holy",  "Jesus",   "Know",
      "Lord",       "Neither", "Nevertheless", "Now",   "Saying",  "Shall",     "Spirit", "Take",  "That",    "Their",
      "Then",       "There",   "Therefore",    "These", "They",    "This",      "Those",  "Thou",  "Unto",    "Verily",
      "Whatsoever", "When",    "Wherefore",    "Which", "While",   "Whosoever", "Will",   "With",  "Woe"};
  return words;
}

}  // namespace

std::vector<std::vector<TokenId>> encode_paragraphs(const Tokenizer& tok, const std::string& text) {
  std::vector<std::vector<TokenId>> out;
  for (absl::string_view para : absl::StrSplit(text, "\n\n", absl::SkipWhitespace())) {
    out.push_back(tok.encode(std::string_view(para.data(), para.size()), false, false));
  }
  return out;
}

// Whether `word` occurs in `text` with no letter on either side.
bool has_word(const std::string& text, const std::string& word) {
  const auto letter = [&](size_t i) { return i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])); };
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    if ((at == 0 || !letter(at - 1)) && !letter(at + word.size())) return true;
  }
  return false;
}

// Capitalised words of four letters or more (not common ones) inside sentences (not after the
// start of the text or a '.', '?', '!', ':', ';' or ',', where any word may be capitalised), and
// their counts: names, for the most part.
std::map<std::string, int> names_in(const std::string& text) {
  std::map<std::string, int> count;
  char before = '.';  // the last character before this word that is not a space or a quote
  for (size_t i = 0; i < text.size();) {
    const unsigned char ch = static_cast<unsigned char>(text[i]);
    if (!std::isalpha(ch)) {
      if (!std::isspace(ch) && ch != '"' && ch != '\'' && ch != '(') before = char(ch);
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
    const std::string w = text.substr(i, j - i);
    bool name = w.size() >= 4 && std::isupper(static_cast<unsigned char>(w[0])) && !std::strchr(".?!:;,", before);
    for (size_t k = 1; name && k < w.size(); ++k) name = std::islower(static_cast<unsigned char>(w[k]));
    if (name && !common_capitalised().contains(w)) ++count[w];
    before = 'a';
    i = j;
  }
  return count;
}

// Up to three of `names` used at least twice that no text of `others` contains, the most
// frequent first.
std::vector<std::string> key_terms(const std::map<std::string, int>& names,
                                   const std::vector<const std::string*>& others) {
  std::vector<std::pair<int, std::string>> ranked;
  for (const auto& [w, n] : names) {
    bool own = n >= 2;
    for (const std::string* o : others) own = own && !has_word(*o, w);
    if (own) ranked.push_back({-n, w});
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> out;
  for (size_t i = 0; i < ranked.size() && i < 3; ++i) out.push_back(ranked[i].second);
  return out;
}

StatusOr<std::vector<DocumentSection>> draw_sections(const Tokenizer& tok,
                                                     const std::vector<std::vector<TokenId>>& paragraphs,
                                                     int n_sections, int64_t tokens_each, std::mt19937_64& rng) {
  if (paragraphs.empty() || n_sections < 1 || tokens_each < 1) {
    return absl::InvalidArgumentError("sections need prose, a count and a length");
  }
  const std::vector<TokenId> gap = tok.encode("\n\n", false, false);
  struct Pick {
    DocumentSection s;
    std::map<std::string, int> names;
  };
  // A section from paragraph `first` on, cut at tokens_each tokens.
  auto section_from = [&](size_t first) {
    Pick p;
    DocumentSection& s = p.s;
    s.first = first;
    for (s.end = first; s.end < paragraphs.size() && int64_t(s.tokens.size()) < tokens_each; ++s.end) {
      if (!s.tokens.empty()) s.tokens.insert(s.tokens.end(), gap.begin(), gap.end());
      s.tokens.insert(s.tokens.end(), paragraphs[s.end].begin(), paragraphs[s.end].end());
    }
    if (int64_t(s.tokens.size()) > tokens_each) s.tokens.resize(size_t(tokens_each));
    s.text = tok.decode(s.tokens);
    p.names = names_in(s.text);
    return p;
  };
  // Every pick keeps a key term of its own against all the others.
  auto terms_of = [](const std::vector<Pick>& picks, size_t i) {
    std::vector<const std::string*> others;
    for (size_t j = 0; j < picks.size(); ++j) {
      if (j != i) others.push_back(&picks[j].s.text);
    }
    return key_terms(picks[i].names, others);
  };
  std::vector<Pick> picks;
  for (int attempt = 0; int(picks.size()) < n_sections; ++attempt) {
    if (attempt > 200 * n_sections) {
      return absl::InvalidArgumentError(
          absl::StrCat("the text does not hold ", n_sections, " separate sections with names of their own"));
    }
    Pick p = section_from(size_t(rng() % paragraphs.size()));
    if (int64_t(p.s.tokens.size()) < tokens_each) continue;  // ran off the end of the text
    bool ok = true;
    for (const Pick& q : picks) ok = ok && (p.s.end <= q.s.first || q.s.end <= p.s.first);
    if (!ok) continue;
    picks.push_back(std::move(p));
    for (size_t i = 0; ok && i < picks.size(); ++i) ok = !terms_of(picks, i).empty();
    if (!ok) picks.pop_back();
  }
  for (size_t i = 0; i < picks.size(); ++i) picks[i].s.terms = terms_of(picks, i);
  std::vector<DocumentSection> out;
  for (Pick& p : picks) out.push_back(std::move(p.s));
  return out;
}

}  // namespace edgeinf
