// Sampling, stop conditions and detokenisation of one generated token (see decode_step.h).
#include "engine/runtime/decode_step.h"

#include <utility>

namespace edgeinf {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEndOfGeneration: return "stop";
    case FinishReason::kStopString: return "stop_string";
    case FinishReason::kContextFull: return "context_full";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

DecodeStep::DecodeStep(const Tokenizer& tokenizer, const GenerateOptions& options)
    : tokenizer_(tokenizer),
      sampler_(options.sampling, tokenizer.n_vocab()),
      stops_(options.stop),
      max_tokens_(options.max_tokens),
      ignore_eos_(options.ignore_eos) {}

DecodeStep::Token DecodeStep::next(std::span<const float> logits, bool context_has_room) {
  Token out;
  out.id = sampler_.sample(logits);
  sampler_.accept(out.id);
  ++generated_;
  if (!ignore_eos_ && tokenizer_.is_eog(out.id)) {
    out.finish = FinishReason::kEndOfGeneration;
    return out;
  }
  held_ids_.push_back(out.id);
  out.text = stops_.push(utf8_.push(tokenizer_.token_to_piece(out.id)));
  if (!out.text.empty()) out.ids = std::exchange(held_ids_, {});
  if (stops_.stopped()) {
    out.finish = FinishReason::kStopString;
  } else if (done()) {
    out.finish = FinishReason::kLength;
  } else if (!context_has_room) {
    out.finish = FinishReason::kContextFull;
  }
  return out;
}

DecodeStep::Token DecodeStep::flush(bool keep_incomplete, std::string* incomplete) {
  Token out;
  if (keep_incomplete && incomplete != nullptr) *incomplete = utf8_.take_incomplete();
  out.text = stops_.push(utf8_.flush()) + stops_.flush();
  out.ids = std::exchange(held_ids_, {});
  return out;
}

}  // namespace edgeinf
