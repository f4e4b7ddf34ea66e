// Instruction samples for segment-wise fine-tuning of the memory gate (S-SFT): a long document of
// the training prose read segment by segment, then a question whose answer lies before the exact
// window (sinks and window), so that only the compressed memory can carry it.
//
// Three task shapes, cycled over the samples:
//   fact     three sentences "<person> left the <object> in the <place>." spread over the far
//            part of the prose; "Q: Where did <person> leave the <object>?\nA: <person> left the
//            <object> in the" answered " <place>."
//   part     a document of parts headed "Part k."; "Q: Whom does part k tell of?\nA: Part k tells
//            of" answered with the part's key terms (document_sections.h), for a part that ends
//            before the window
//   outline  the same kind of document; "Q: List the parts and whom each tells of.\nA:" answered
//            "\nPart 1: <term>.\nPart 2: <term>. ..." for every part
// The people, objects and places, the "Q:"/"A:" wording and the "Part k." headers are the
// training set's own: the evaluations (edgeinf eval docqa and coverage) use other names, other
// wordings ("Question:", "keeps", "Section k:") and the held-out text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/calibration/lm_gate_training.h"
#include "engine/tokenizer/tokenizer.h"

namespace edgeinf {

enum class SftTask { kFact, kPart, kOutline };
const char* sft_task_name(SftTask t);

struct SftSampleOptions {
  int64_t context = 4096;  // tokens of each document (the question and answer follow it)
  int64_t recent = 2048;   // what is asked about ends before the document's last `recent` tokens
  int samples = 24;        // in all, cycling through the task shapes
  int parts = 4;           // parts of the part and outline documents
  uint64_t seed = 1;
};

struct SftSample {
  SftTask task = SftTask::kFact;
  GateTrainingSample sample;
  std::string question, answer;  // as text, for reports
};

// The samples, deterministic for the options; `paragraphs` are the training prose's paragraphs
// (blank-line separated), tokenised. An error when the prose cannot hold them.
StatusOr<std::vector<SftSample>> make_sft_samples(const Tokenizer& tok,
                                                  const std::vector<std::vector<TokenId>>& paragraphs,
                                                  const SftSampleOptions& options);

}  // namespace edgeinf
