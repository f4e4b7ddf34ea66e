// Prefill in n_batch chunks, then the decode loop: sample, check stop conditions, detokenise
// into whole UTF-8 characters, hold back possible stop-string prefixes, emit.
#include "engine/runtime/generator.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/tokenizer/utf8_stream.h"

namespace edgeinf {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

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
  Sampler sampler(options.sampling, tokenizer.n_vocab());
  for (TokenId t : prompt) sampler.accept(t);

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
  Utf8Stream utf8;
  StopMatcher stops(options.stop);
  auto emit = [&](std::string_view text, TokenId token) {
    return text.empty() || !callbacks.on_text || callbacks.on_text(text, token);
  };
  stats.finish = FinishReason::kLength;
  TokenId last = -1;
  while (stats.generated_tokens < options.max_tokens) {
    const TokenId token = sampler.sample(logits);
    sampler.accept(token);
    last = token;
    if (!options.ignore_eos && tokenizer.is_eog(token)) {
      stats.finish = FinishReason::kEndOfGeneration;
      break;
    }
    ++stats.generated_tokens;
    const std::string text = stops.push(utf8.push(tokenizer.token_to_piece(token)));
    if (!emit(text, token)) {
      stats.finish = FinishReason::kCancelled;
      break;
    }
    if (stops.stopped()) {
      stats.finish = FinishReason::kStopString;
      break;
    }
    if (stats.generated_tokens == options.max_tokens) break;
    if (ctx.n_past() >= ctx.capacity()) {
      stats.finish = FinishReason::kContextFull;
      break;
    }
    const TokenId next[1] = {token};
    EDGEINF_ASSIGN_OR_RETURN(logits, ctx.eval(next));
  }
  if (stats.finish != FinishReason::kStopString && stats.finish != FinishReason::kCancelled) {
    emit(stops.push(utf8.flush()) + stops.flush(), last);
  }
  stats.decode_seconds = seconds_since(t_decode);
  return stats;
}

}  // namespace edgeinf
