// Prompt construction for edgeinf eval. Pieces are tokenised separately and spliced as token ids,
// so every prompt has exactly the requested length.
#include "engine/cli/eval_tasks.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/document_sections.h"

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
                           place, encode(tok, absl::StrCat(" ", place, "."))});
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
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 29);
  auto picks = draw_sections(tok, paragraphs, n_sections, per_section, rng);
  if (!picks.ok()) return absl::InvalidArgumentError(absl::StrCat("coverage: ", picks.status().message()));
  Coverage c;
  c.tokens = before;
  for (size_t i = 0; i < picks->size(); ++i) {
    const DocumentSection& p = (*picks)[i];
    c.tokens.insert(c.tokens.end(), headers[i].begin(), headers[i].end());
    const double start = double(c.tokens.size());
    c.tokens.insert(c.tokens.end(), p.tokens.begin(), p.tokens.end());
    c.sections.push_back({(start + double(p.tokens.size()) / 2) / double(length), p.terms});
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
