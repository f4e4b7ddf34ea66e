// S-SFT samples from the training prose; see sft_samples.h.
#include "engine/calibration/sft_samples.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/document_sections.h"

namespace edgeinf {
namespace {

// The fact task's people, objects and places: none of them is one of docqa's.
constexpr const char* kPeople[] = {"Aunt Margolis",   "Inspector Haldane", "Dr. Ferreira",  "Uncle Petrov",
                                   "Madame Rousseau", "Coach Whitaker",    "Sister Agatha", "Mayor Castellanos",
                                   "Pilot Nakamura",  "Officer Kimani",    "Granny Holt",   "Baron Albrecht"};
constexpr const char* kObjects[] = {"blue notebook", "iron skillet", "leather satchel", "glass jar",
                                    "tin whistle",   "velvet hat",   "bicycle pump",    "sewing kit",
                                    "oak chest",     "paper kite",   "flower vase",     "fishing rod"};
constexpr const char* kPlaces[] = {"barn",  "shed",   "kitchen", "chapel",  "library", "basement",
                                   "porch", "garden", "mill",    "hallway", "studio",  "warehouse"};
constexpr int kFacts = 3;

std::vector<TokenId> encode(const Tokenizer& tok, const std::string& text) { return tok.encode(text, false, false); }

SftSample finish(const Tokenizer& tok, SftTask task, std::vector<TokenId> document, std::string question,
                 std::string answer) {
  SftSample s;
  s.task = task;
  GateTrainingSample& t = s.sample;
  t.tokens = std::move(document);
  t.document_end = int64_t(t.tokens.size());
  const std::vector<TokenId> q = encode(tok, question), a = encode(tok, answer);
  t.tokens.insert(t.tokens.end(), q.begin(), q.end());
  t.score_from = int64_t(t.tokens.size());
  t.tokens.insert(t.tokens.end(), a.begin(), a.end());
  s.question = std::move(question);
  s.answer = std::move(answer);
  return s;
}

StatusOr<SftSample> fact_sample(const Tokenizer& tok, const std::vector<TokenId>& prose, const SftSampleOptions& o,
                                std::mt19937_64& rng) {
  std::vector<int> people(std::size(kPeople)), objects(std::size(kObjects)), places(std::size(kPlaces));
  for (std::vector<int>* v : {&people, &objects, &places}) {
    std::iota(v->begin(), v->end(), 0);
    std::shuffle(v->begin(), v->end(), rng);
  }
  std::vector<std::vector<TokenId>> facts;
  int64_t fact_tokens = 0;
  for (int i = 0; i < kFacts; ++i) {
    facts.push_back(
        encode(tok, absl::StrCat(" ", kPeople[people[size_t(i)]], " left the ", kObjects[objects[size_t(i)]],
                                 " in the ", kPlaces[places[size_t(i)]], ". ")));
    fact_tokens += int64_t(facts.back().size());
  }
  // Each fact goes after a cut of the prose; all of them end before the window.
  const int64_t last_cut = o.context - o.recent - fact_tokens;
  if (last_cut < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a document of ", o.context, " tokens leaves no room before its last ", o.recent, " for the facts"));
  }
  std::vector<int64_t> cuts;
  for (int i = 0; i < kFacts; ++i) cuts.push_back(int64_t(rng() % uint64_t(last_cut + 1)));
  std::sort(cuts.begin(), cuts.end());
  size_t at = size_t(rng() % prose.size());
  std::vector<TokenId> doc;
  int64_t used = 0;
  auto take_prose = [&](int64_t until) {
    for (; used < until; ++used, at = (at + 1) % prose.size()) doc.push_back(prose[at]);
  };
  for (int i = 0; i < kFacts; ++i) {
    take_prose(cuts[size_t(i)]);
    doc.insert(doc.end(), facts[size_t(i)].begin(), facts[size_t(i)].end());
  }
  take_prose(o.context - fact_tokens);
  const size_t asked = size_t(rng() % kFacts);
  const std::string person = kPeople[people[asked]], object = kObjects[objects[asked]];
  return finish(
      tok, SftTask::kFact, std::move(doc),
      absl::StrCat("\nQ: Where did ", person, " leave the ", object, "?\nA: ", person, " left the ", object, " in the"),
      absl::StrCat(" ", kPlaces[places[asked]], "."));
}

StatusOr<SftSample> parts_sample(const Tokenizer& tok, const std::vector<std::vector<TokenId>>& paragraphs,
                                 SftTask task, const SftSampleOptions& o, std::mt19937_64& rng) {
  std::vector<std::vector<TokenId>> headers;
  int64_t header_tokens = 0;
  for (int k = 1; k <= o.parts; ++k) {
    headers.push_back(encode(tok, absl::StrCat(k == 1 ? "" : "\n\n", "Part ", k, ".\n")));
    header_tokens += int64_t(headers.back().size());
  }
  const int64_t each = (o.context - header_tokens) / o.parts;
  if (each < 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("a document of ", o.context, " tokens leaves ", each, " per part; at least 32 are needed"));
  }
  auto sections = draw_sections(tok, paragraphs, o.parts, each, rng);
  if (!sections.ok()) return sections.status();
  std::vector<TokenId> doc;
  std::vector<int64_t> ends;
  for (size_t k = 0; k < sections->size(); ++k) {
    doc.insert(doc.end(), headers[k].begin(), headers[k].end());
    doc.insert(doc.end(), (*sections)[k].tokens.begin(), (*sections)[k].tokens.end());
    ends.push_back(int64_t(doc.size()));
  }
  if (task == SftTask::kOutline) {
    std::string answer;
    for (size_t k = 0; k < sections->size(); ++k)
      absl::StrAppend(&answer, "\nPart ", k + 1, ": ", (*sections)[k].terms[0], ".");
    return finish(tok, task, std::move(doc), "\nQ: List the parts and whom each tells of.\nA:", answer);
  }
  std::vector<size_t> far;
  for (size_t k = 0; k < ends.size(); ++k) {
    if (ends[k] <= int64_t(doc.size()) - o.recent) far.push_back(k);
  }
  if (far.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no part of a document of ", doc.size(),
                                                   " tokens ends before its last ", o.recent, "; use fewer parts"));
  }
  const size_t k = far[size_t(rng() % far.size())];
  const std::vector<std::string>& terms = (*sections)[k].terms;
  const std::vector<std::string> named(terms.begin(), terms.begin() + long(std::min<size_t>(2, terms.size())));
  return finish(tok, task, std::move(doc),
                absl::StrCat("\nQ: Whom does part ", k + 1, " tell of?\nA: Part ", k + 1, " tells of"),
                absl::StrCat(" ", absl::StrJoin(named, " and "), "."));
}

}  // namespace

const char* sft_task_name(SftTask t) {
  switch (t) {
    case SftTask::kFact: return "fact";
    case SftTask::kPart: return "part";
    case SftTask::kOutline: return "outline";
  }
  return "?";
}

StatusOr<std::vector<SftSample>> make_sft_samples(const Tokenizer& tok,
                                                  const std::vector<std::vector<TokenId>>& paragraphs,
                                                  const SftSampleOptions& o) {
  if (o.samples < 1 || o.parts < 1 || o.recent < 1 || o.context <= o.recent) {
    return absl::InvalidArgumentError("S-SFT samples need a count, parts, and a document longer than the window");
  }
  std::vector<TokenId> prose;
  for (const std::vector<TokenId>& p : paragraphs) prose.insert(prose.end(), p.begin(), p.end());
  if (prose.empty()) return absl::InvalidArgumentError("S-SFT samples need prose");
  constexpr SftTask kCycle[] = {SftTask::kFact, SftTask::kPart, SftTask::kOutline};
  std::vector<SftSample> out;
  for (int i = 0; i < o.samples; ++i) {
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(i));
    const SftTask task = kCycle[size_t(i) % std::size(kCycle)];
    StatusOr<SftSample> s =
        task == SftTask::kFact ? fact_sample(tok, prose, o, rng) : parts_sample(tok, paragraphs, task, o, rng);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("S-SFT sample ", i, " (", sft_task_name(task), "): ", s.status().message()));
    }
    out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace edgeinf
