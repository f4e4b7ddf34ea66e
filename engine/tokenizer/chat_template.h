// Chat prompt rendering: recognises a model's Jinja chat template by its markers (as llama.cpp
// does) and renders messages in that format without a Jinja interpreter.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "engine/util/status.h"

namespace edgeinf {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

enum class ChatFormat {
  kChatMl,           // <|im_start|>role\ncontent<|im_end|>\n
  kLlama3,           // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  kLlama2,           // [INST] user [/INST] assistant</s>, system text folded into the turn
  kLlama2Sys,        // kLlama2 with <<SYS>>\n...\n<</SYS>>\n\n system blocks
  kLlama2SysBos,     // kLlama2Sys with <s> before every later [INST]
  kLlama2SysStrip,   // kLlama2Sys with message content trimmed
  kMistralV1,        // " [INST] user [/INST] assistant</s>"
  kMistralV3,        // "[INST] user[/INST] assistant</s>", assistant content trimmed
  kMistralV3Tekken,  // "[INST]user[/INST]assistant</s>"
  kMistralV7,        // [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] ...</s>
};

// A recognised template: its format and, for ChatML templates that insert a fixed system
// message when the conversation does not start with one (SmolLM2, Qwen2), that message.
struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatMl;
  std::string default_system;  // empty: no default system message
};

// Recognises a Jinja template by its markers, or a format name ("chatml", "llama3", "llama2",
// "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3",
// "mistral-v3-tekken", "mistral-v7"). An empty template is ChatML. Unrecognised: InvalidArgument
// quoting the start of the template.
StatusOr<ChatTemplate> detect_chat_template(std::string_view tmpl);

// Renders a recognised template. add_generation_prompt appends the header of an assistant turn
// (formats whose user turn already ends in the assistant cue, Llama-2 and Mistral, add nothing).
// No BOS text is written: the tokenizer adds BOS when the vocabulary asks for it.
std::string render_chat(const ChatTemplate& tmpl, std::span<const ChatMessage> messages, bool add_generation_prompt);

// detect_chat_template + render_chat.
StatusOr<std::string> apply_chat_template(std::string_view tmpl, std::span<const ChatMessage> messages,
                                          bool add_generation_prompt);

}  // namespace edgeinf
