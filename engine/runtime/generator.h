// One completion over a context the caller holds (the CLI's generate command, tests): prefill a
// prompt (with progress), then decode and stream text until a stop condition. The service's
// scheduler runs the same decode step (decode_step.h) one token at a time across turns.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/runtime/decode_step.h"
#include "engine/runtime/llama_context.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status.h"

namespace edgeinf {

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  FinishReason finish = FinishReason::kLength;
};

struct GenerateCallbacks {
  // After each prefill batch: tokens done so far, prompt size.
  std::function<void(int done, int total)> on_prefill_progress;
  // Each piece of valid UTF-8 text as it becomes final, with the token that completed it.
  // Returning false cancels generation.
  std::function<bool(std::string_view text, TokenId token)> on_text;
};

StatusOr<GenerateStats> generate(LlamaContext& ctx, const Tokenizer& tokenizer, std::span<const TokenId> prompt,
                                 const GenerateOptions& options, const GenerateCallbacks& callbacks);

}  // namespace edgeinf
