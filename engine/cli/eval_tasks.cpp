// Prompt construction for edgeinf eval. Pieces are tokenised separately and spliced as token ids,
// so every prompt has exactly the requested length.
#include "engine/cli/eval_tasks.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/chat_template.h"

namespace edgeinf::cli {
namespace {

constexpr const char* kCities[] = {"Lisbon", "Nairobi", "Kyoto", "Quito", "Oslo", "Hanoi", "Tunis", "Perth"};

// docqa's facts: a person keeps an object in a place. Modern names and things, so that the
// Biblical prose around them never states a competing fact.
constexpr const char* kPeople[] = {"Doctor Okafor",    "Captain Lindqvist", "Mrs. Alvarez",   "Professor Tanaka",
                                   "Mr. Brennan",      "Nurse Kowalski",    "Judge Mbeki",    "Ms. Fontaine",
                                   "Sergeant Ivanova", "Father Delgado",    "Miss Abernathy", "Chef Moreau"};
constexpr const char* kObjects[] = {"brass compass", "green ledger",   "silver kettle", "spare key",
                                    "old violin",    "wool blanket",   "pocket watch",  "red umbrella",
                                    "harbour map",   "box of letters", "copper lamp",   "chess set"};
constexpr const char* kPlaces[] = {"attic",  "cellar", "boathouse", "pantry",  "greenhouse", "workshop",
                                   "stable", "garage", "bakery",    "orchard", "lighthouse", "laundry"};

std::vector<TokenId> encode(const Tokenizer& tok, const std::string& text) { return tok.encode(text, false, false); }

// filler[0:cut] + insert + filler[cut:] trimmed so the total with head and tail is `length`.
std::vector<TokenId> splice(const std::vector<TokenId>& head, const std::vector<TokenId>& body,
                            const std::vector<std::pair<double, std::vector<TokenId>>>& inserts,
                            const std::vector<TokenId>& tail, int64_t length) {
  int64_t fixed = int64_t(head.size() + tail.size());
  for (const auto& [depth, ins] : inserts) fixed += int64_t(ins.size());
  const int64_t n_body = std::max<int64_t>(0, length - fixed);
  std::vector<TokenId> out(head);
  int64_t used = 0;
  for (const auto& [depth, ins] : inserts) {
    const int64_t cut = std::clamp<int64_t>(int64_t(depth * double(n_body)), used, n_body);
    for (int64_t i = used; i < cut; ++i) out.push_back(body[size_t(i % int64_t(body.size()))]);
    used = cut;
    out.insert(out.end(), ins.begin(), ins.end());
  }
  for (int64_t i = used; i < n_body; ++i) out.push_back(body[size_t(i % int64_t(body.size()))]);
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

}  // namespace

RetrievalPrompt passkey_prompt(const Tokenizer& tok, int64_t length, double depth, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::string key = std::to_string(10000 + rng() % 90000);
  const std::vector<TokenId> head =
      encode(tok,
             "There is an important piece of information hidden inside a lot of irrelevant text. Find it and "
             "memorize it. I will quiz you about the important information there.\n");
  const std::vector<TokenId> filler =
      encode(tok, " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.");
  const std::vector<TokenId> needle =
      encode(tok, absl::StrCat(" The pass key is ", key, ". Remember it. ", key, " is the pass key."));
  const std::vector<TokenId> tail = encode(tok, "\nWhat is the pass key? The pass key is");
  return {splice(head, filler, {{depth, needle}}, tail, length), {key}};
}

RetrievalPrompt needle_prompt(const Tokenizer& tok, const std::vector<TokenId>& haystack, int64_t length, double depth,
                              int n_needles, uint64_t seed) {
  std::mt19937_64 rng(seed);
  RetrievalPrompt p;
  std::vector<std::pair<double, std::vector<TokenId>>> inserts;
  std::vector<std::string> cities;
  for (int i = 0; i < n_needles; ++i) {
    const std::string city = kCities[(seed + uint64_t(i)) % std::size(kCities)];
    const std::string number = std::to_string(1000000 + rng() % 9000000);
    const double d = n_needles == 1 ? depth : std::fmod(depth + double(i) / n_needles, 1.0);
    inserts.push_back({d, encode(tok, absl::StrCat(" The special magic number for ", city, " is ", number, ". "))});
    cities.push_back(city);
    p.answers.push_back(number);
  }
  std::sort(inserts.begin(), inserts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const std::vector<TokenId> head =
      encode(tok,
             "Some special magic numbers are hidden inside the following text. Remember them; you will be asked about "
             "them.\n");
  std::string question = "\nWhat is the special magic number for " + cities[0];
  for (size_t i = 1; i < cities.size(); ++i) question += (i + 1 == cities.size() ? " and " : ", ") + cities[i];
  question += n_needles == 1 ? "? The special magic number for " + cities[0] + " is"
                             : "? Answer with the numbers. The special magic numbers are";
  const std::vector<TokenId> tail = encode(tok, question);
  // The haystack starts at a seeded offset so different seeds read different prose.
  const size_t offset = haystack.empty() ? 0 : size_t(rng() % haystack.size());
  std::vector<TokenId> body(haystack.begin() + long(offset), haystack.end());
  body.insert(body.end(), haystack.begin(), haystack.begin() + long(offset));
  p.tokens = splice(head, body, inserts, tail, length);
  return p;
}

DocQa docqa_prompt(const Tokenizer& tok, const std::vector<TokenId>& haystack, int64_t length,
                   const std::vector<double>& depths, uint64_t seed) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 13);
  std::vector<int> people(std::size(kPeople)), objects(std::size(kObjects)), places(std::size(kPlaces));
  for (std::vector<int>* v : {&people, &objects, &places}) {
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = int(i);
    std::shuffle(v->begin(), v->end(), rng);
  }
  DocQa d;
  std::vector<std::pair<double, std::vector<TokenId>>> inserts;
  for (size_t i = 0; i < depths.size(); ++i) {
    const std::string person = kPeople[people[i % people.size()]];
    const std::string object = kObjects[objects[i % objects.size()]];
    const std::string place = kPlaces[places[i % places.size()]];
    inserts.push_back(
        {depths[i], encode(tok, absl::StrCat(" ", person, " keeps the ", object, " in the ", place, ". "))});
    d.questions.push_back({depths[i],
                           encode(tok, absl::StrCat("\nQuestion: Where does ", person, " keep the ", object,
                                                    "?\nAnswer: ", person, " keeps the ", object, " in the")),
                           place});
  }
  std::stable_sort(inserts.begin(), inserts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const std::vector<TokenId> head =
      encode(tok, "Read the following document. Questions about the facts it states follow at the end.\n");
  const size_t offset = haystack.empty() ? 0 : size_t(rng() % haystack.size());
  std::vector<TokenId> body(haystack.begin() + long(offset), haystack.end());
  body.insert(body.end(), haystack.begin(), haystack.begin() + long(offset));
  d.document = splice(head, body, inserts, {}, length);
  return d;
}

namespace {

// Whether `word` occurs in `text` with no letter on either side.
bool has_word(const std::string& text, const std::string& word) {
  const auto letter = [&](size_t i) { return i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])); };
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    if ((at == 0 || !letter(at - 1)) && !letter(at + word.size())) return true;
  }
  return false;
}

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

}  // namespace

double docqa_score(const std::string& answer, const std::string& generated) {
  return has_word(generated.substr(0, generated.find_first_of(".,\n")), answer) ? 1.0 : 0.0;
}

StatusOr<Coverage> coverage_prompt(const Tokenizer& tok, const std::vector<std::vector<TokenId>>& paragraphs,
                                   int64_t length, int n_sections, uint64_t seed) {
  if (paragraphs.empty() || n_sections < 1) return absl::InvalidArgumentError("coverage needs prose and sections");
  // The chat turn around the document, tokenised with its markers.
  constexpr const char* kMark = "@@DOCUMENT@@";
  const ChatMessage turn{"user", absl::StrCat("Read this document of ", n_sections, " sections.\n\n", kMark,
                                              "\n\nSummarise the document section by section: for each section, "
                                              "one sentence that names its people and places.")};
  EDGEINF_ASSIGN_OR_RETURN(const std::string chat,
                           apply_chat_template(tok.chat_template(), std::span<const ChatMessage>(&turn, 1), true));
  const size_t mark = chat.find(kMark);
  const std::vector<TokenId> before = tok.encode(chat.substr(0, mark), true, true);
  const std::vector<TokenId> after = tok.encode(chat.substr(mark + std::strlen(kMark)), false, true);
  std::vector<std::vector<TokenId>> headers;
  int64_t fixed = int64_t(before.size() + after.size());
  for (int i = 0; i < n_sections; ++i) {
    headers.push_back(encode(tok, absl::StrCat(i == 0 ? "" : "\n\n", "Section ", i + 1, ":\n")));
    fixed += int64_t(headers.back().size());
  }
  const int64_t per_section = (length - fixed) / n_sections;
  if (per_section < 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("coverage: ", length, " tokens leave ", per_section, " per section; at least 64 are needed"));
  }
  const std::vector<TokenId> gap = encode(tok, "\n\n");
  struct Pick {
    size_t first = 0, end = 0;  // paragraphs [first, end)
    std::vector<TokenId> tokens;
    std::string text;
    std::map<std::string, int> names;
  };
  // A section from paragraph `first` on, cut at per_section tokens.
  auto section_from = [&](size_t first) {
    Pick p;
    p.first = first;
    for (p.end = first; p.end < paragraphs.size() && int64_t(p.tokens.size()) < per_section; ++p.end) {
      if (!p.tokens.empty()) p.tokens.insert(p.tokens.end(), gap.begin(), gap.end());
      p.tokens.insert(p.tokens.end(), paragraphs[p.end].begin(), paragraphs[p.end].end());
    }
    if (int64_t(p.tokens.size()) > per_section) p.tokens.resize(size_t(per_section));
    p.text = tok.decode(p.tokens);
    p.names = names_in(p.text);
    return p;
  };
  // Every pick keeps a key term of its own against all the others.
  auto terms_of = [](const std::vector<Pick>& picks, size_t i) {
    std::vector<const std::string*> others;
    for (size_t j = 0; j < picks.size(); ++j) {
      if (j != i) others.push_back(&picks[j].text);
    }
    return key_terms(picks[i].names, others);
  };
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 29);
  std::vector<Pick> picks;
  for (int attempt = 0; int(picks.size()) < n_sections; ++attempt) {
    if (attempt > 200 * n_sections) {
      return absl::InvalidArgumentError(
          absl::StrCat("coverage: the text does not hold ", n_sections, " separate sections with names of their own"));
    }
    Pick p = section_from(size_t(rng() % paragraphs.size()));
    if (int64_t(p.tokens.size()) < per_section) continue;  // ran off the end of the text
    bool ok = true;
    for (const Pick& q : picks) ok = ok && (p.end <= q.first || q.end <= p.first);
    if (!ok) continue;
    picks.push_back(std::move(p));
    for (size_t i = 0; ok && i < picks.size(); ++i) ok = !terms_of(picks, i).empty();
    if (!ok) picks.pop_back();
  }
  Coverage c;
  c.tokens = before;
  for (size_t i = 0; i < picks.size(); ++i) {
    c.tokens.insert(c.tokens.end(), headers[i].begin(), headers[i].end());
    const double start = double(c.tokens.size());
    c.tokens.insert(c.tokens.end(), picks[i].tokens.begin(), picks[i].tokens.end());
    c.sections.push_back({(start + double(picks[i].tokens.size()) / 2) / double(length), terms_of(picks, i)});
  }
  c.tokens.insert(c.tokens.end(), after.begin(), after.end());
  return c;
}

double coverage_score(const std::vector<std::string>& terms, const std::string& summary) {
  for (const std::string& t : terms) {
    if (has_word(summary, t)) return 1.0;
  }
  return 0.0;
}

double retrieval_score(const RetrievalPrompt& p, const std::string& generated) {
  int found = 0;
  for (const std::string& a : p.answers) found += generated.find(a) != std::string::npos;
  return p.answers.empty() ? 0.0 : double(found) / double(p.answers.size());
}

}  // namespace edgeinf::cli
