// Prefill in n_batch chunks, then the decode loop: the decode step (decode_step.h) samples, checks
// the stop conditions and turns tokens into text; this loop emits it and feeds the token back.
#include "engine/runtime/generator.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace edgeinf {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

StatusOr<GenerateStats> generate(LlamaContext& ctx, const Tokenizer& tokenizer, std::span<const TokenId> prompt,
                                 const GenerateOptions& options, const GenerateCallbacks& callbacks) {
  EDGEINF_RETURN_IF_ERROR(validate(options.sampling));
  if (options.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (ctx.capacity() - ctx.n_past() < int64_t(prompt.size())) {
    return absl::OutOfRangeError(absl::StrCat("the prompt has ", prompt.size(), " tokens; the context holds ",
                                              ctx.capacity() - ctx.n_past(), " more"));
  }
  GenerateStats stats;
  stats.prompt_tokens = int(prompt.size());
  DecodeStep step(tokenizer, options);
  for (TokenId t : prompt) step.accept(t);

  const auto t_prefill = std::chrono::steady_clock::now();
  std::span<const float> logits;
  for (size_t done = 0; done < prompt.size();) {
    const size_t n = std::min(size_t(ctx.n_batch()), prompt.size() - done);
    EDGEINF_ASSIGN_OR_RETURN(logits, ctx.eval(prompt.subspan(done, n)));
    done += n;
    if (callbacks.on_prefill_progress) callbacks.on_prefill_progress(int(done), int(prompt.size()));
  }
  stats.prefill_seconds = seconds_since(t_prefill);

  const auto t_decode = std::chrono::steady_clock::now();
  auto emit = [&](std::string_view text, TokenId token) {
    return text.empty() || !callbacks.on_text || callbacks.on_text(text, token);
  };
  stats.finish = FinishReason::kLength;
  TokenId last = -1;
  while (!step.done()) {
    const DecodeStep::Token token = step.next(logits, ctx.n_past() < ctx.capacity());
    last = token.id;
    if (!emit(token.text, token.id)) {
      stats.finish = FinishReason::kCancelled;
      break;
    }
    if (token.finish) {
      stats.finish = *token.finish;
      break;
    }
    const TokenId next[1] = {token.id};
    EDGEINF_ASSIGN_OR_RETURN(logits, ctx.eval(next));
  }
  stats.generated_tokens = step.generated();
  if (stats.finish != FinishReason::kStopString && stats.finish != FinishReason::kCancelled) {
    emit(step.flush(false, nullptr).text, last);
  }
  stats.decode_seconds = seconds_since(t_decode);
  return stats;
}

}  // namespace edgeinf
