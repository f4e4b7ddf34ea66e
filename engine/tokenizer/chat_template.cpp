// Chat template detection by marker strings and rendering of each supported prompt format.
#include "engine/tokenizer/chat_template.h"

#include <utility>

namespace edgeinf {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Strips ASCII whitespace at both ends (what llama.cpp's trim and Jinja's |trim do for ASCII).
std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(kSpace) - begin + 1);
}

// Appends every part to out.
template <typename... Parts>
void append(std::string& out, const Parts&... parts) {
  (out.append(std::string_view(parts)), ...);
}

// Undoes Jinja string-literal escapes (\n, \t, \', \", \\). Returns false on any other
// backslash sequence.
bool unescape_jinja(std::string_view text, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out.push_back(text[i]);
      continue;
    }
    if (++i == text.size()) return false;
    switch (text[i]) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case '\'':
      case '"':
      case '\\': out.push_back(text[i]); break;
      default: return false;
    }
  }
  return true;
}

// The fixed system message a ChatML template writes when the first message is not a system
// message: the literal text of some "<|im_start|>system\n...<|im_end|>" inside one string
// literal (no quote, brace or expression in between). Empty when there is none.
std::string find_default_system(std::string_view tmpl) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  constexpr std::string_view kClose = "<|im_end|>";
  for (size_t at = tmpl.find(kOpen); at != std::string_view::npos; at = tmpl.find(kOpen, at + 1)) {
    std::string_view rest = tmpl.substr(at + kOpen.size());
    if (rest.starts_with("\n")) {
      rest.remove_prefix(1);
    } else if (rest.starts_with("\\n")) {
      rest.remove_prefix(2);
    } else {
      continue;
    }
    const size_t close = rest.find(kClose);
    if (close == std::string_view::npos) continue;
    const std::string_view literal = rest.substr(0, close);
    if (literal.empty() || literal.find_first_of("'\"{}") != std::string_view::npos) continue;
    std::string text;
    if (unescape_jinja(literal, text)) return text;
  }
  return {};
}

// Template names accepted in place of a Jinja template.
StatusOr<ChatFormat> format_from_name(std::string_view name) {
  constexpr std::pair<std::string_view, ChatFormat> kNames[] = {
      {"chatml", ChatFormat::kChatMl},
      {"llama3", ChatFormat::kLlama3},
      {"llama2", ChatFormat::kLlama2},
      {"llama2-sys", ChatFormat::kLlama2Sys},
      {"llama2-sys-bos", ChatFormat::kLlama2SysBos},
      {"llama2-sys-strip", ChatFormat::kLlama2SysStrip},
      {"mistral-v1", ChatFormat::kMistralV1},
      {"mistral-v3", ChatFormat::kMistralV3},
      {"mistral-v3-tekken", ChatFormat::kMistralV3Tekken},
      {"mistral-v7", ChatFormat::kMistralV7},
  };
  for (const auto& [known, format] : kNames) {
    if (name == known) return format;
  }
  return absl::NotFoundError(std::string(name));
}

// Llama-2 [INST] prompts (the variants llama.cpp distinguishes).
void render_llama2(ChatFormat format, std::span<const ChatMessage> messages, std::string& out) {
  const bool system_block = format != ChatFormat::kLlama2;
  const bool bos_inside_history = format == ChatFormat::kLlama2SysBos;
  const bool strip = format == ChatFormat::kLlama2SysStrip;
  bool inside_turn = true;
  out += "[INST] ";
  for (const ChatMessage& message : messages) {
    const std::string_view content = strip ? trim(message.content) : std::string_view(message.content);
    if (!inside_turn) {
      inside_turn = true;
      out += bos_inside_history ? "<s>[INST] " : "[INST] ";
    }
    if (message.role == "system") {
      if (system_block) {
        append(out, "<<SYS>>\n", content, "\n<</SYS>>\n\n");
      } else {
        append(out, content, "\n");
      }
    } else if (message.role == "user") {
      append(out, content, " [/INST]");
    } else {
      append(out, content, "</s>");
      inside_turn = false;
    }
  }
}

// Mistral v1 / v3 / v3-tekken [INST] prompts.
void render_mistral(ChatFormat format, std::span<const ChatMessage> messages, std::string& out) {
  const std::string_view leading = format == ChatFormat::kMistralV1 ? " " : "";
  const std::string_view trailing = format == ChatFormat::kMistralV3Tekken ? "" : " ";
  const bool trim_assistant = format == ChatFormat::kMistralV3;
  bool inside_turn = false;
  for (const ChatMessage& message : messages) {
    if (!inside_turn) {
      append(out, leading, "[INST]", trailing);
      inside_turn = true;
    }
    if (message.role == "system") {
      append(out, message.content, "\n\n");
    } else if (message.role == "user") {
      append(out, message.content, leading, "[/INST]");
    } else {
      const std::string_view content = trim_assistant ? trim(message.content) : std::string_view(message.content);
      append(out, trailing, content, "</s>");
      inside_turn = false;
    }
  }
}

}  // namespace

StatusOr<ChatTemplate> detect_chat_template(std::string_view tmpl) {
  ChatTemplate result;
  if (tmpl.empty()) return result;
  if (StatusOr<ChatFormat> named = format_from_name(tmpl); named.ok()) {
    result.format = *named;
    return result;
  }
  if (contains(tmpl, "<|im_start|>")) {
    result.format = ChatFormat::kChatMl;
    result.default_system = find_default_system(tmpl);
    return result;
  }
  if (contains(tmpl, "[INST]")) {
    if (contains(tmpl, "[SYSTEM_PROMPT]")) {
      result.format = ChatFormat::kMistralV7;
    } else if (contains(tmpl, "' [INST] ' + system_message") || contains(tmpl, "[AVAILABLE_TOOLS]")) {
      // Official Mistral templates: v1 puts a space before [INST], v3-tekken quotes "[INST]".
      if (contains(tmpl, " [INST]")) {
        result.format = ChatFormat::kMistralV1;
      } else if (contains(tmpl, "\"[INST]\"")) {
        result.format = ChatFormat::kMistralV3Tekken;
      } else {
        result.format = ChatFormat::kMistralV3;
      }
    } else if (contains(tmpl, "content.strip()")) {
      result.format = ChatFormat::kLlama2SysStrip;
    } else if (contains(tmpl, "bos_token + '[INST]")) {
      result.format = ChatFormat::kLlama2SysBos;
    } else if (contains(tmpl, "<<SYS>>")) {
      result.format = ChatFormat::kLlama2Sys;
    } else {
      result.format = ChatFormat::kLlama2;
    }
    return result;
  }
  if (contains(tmpl, "<|start_header_id|>") && contains(tmpl, "<|end_header_id|>")) {
    result.format = ChatFormat::kLlama3;
    return result;
  }
  constexpr size_t kQuoted = 80;
  std::string message = "unsupported chat template: \"";
  append(message, tmpl.substr(0, kQuoted), tmpl.size() > kQuoted ? "...\"" : "\"",
         " (recognised: ChatML <|im_start|>, Llama-3 <|start_header_id|>, Llama-2/Mistral [INST])");
  return absl::InvalidArgumentError(message);
}

std::string render_chat(const ChatTemplate& tmpl, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  switch (tmpl.format) {
    case ChatFormat::kChatMl:
      if (!tmpl.default_system.empty() && !messages.empty() && messages[0].role != "system") {
        append(out, "<|im_start|>system\n", tmpl.default_system, "<|im_end|>\n");
      }
      for (const ChatMessage& message : messages) {
        append(out, "<|im_start|>", message.role, "\n", message.content, "<|im_end|>\n");
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatFormat::kLlama3:
      for (const ChatMessage& message : messages) {
        append(out, "<|start_header_id|>", message.role, "<|end_header_id|>\n\n", trim(message.content), "<|eot_id|>");
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::kLlama2:
    case ChatFormat::kLlama2Sys:
    case ChatFormat::kLlama2SysBos:
    case ChatFormat::kLlama2SysStrip: render_llama2(tmpl.format, messages, out); break;
    case ChatFormat::kMistralV1:
    case ChatFormat::kMistralV3:
    case ChatFormat::kMistralV3Tekken: render_mistral(tmpl.format, messages, out); break;
    case ChatFormat::kMistralV7:
      for (const ChatMessage& message : messages) {
        if (message.role == "system") {
          append(out, "[SYSTEM_PROMPT] ", message.content, "[/SYSTEM_PROMPT]");
        } else if (message.role == "user") {
          append(out, "[INST] ", message.content, "[/INST]");
        } else {
          append(out, " ", message.content, "</s>");
        }
      }
      break;
  }
  return out;
}

StatusOr<std::string> apply_chat_template(std::string_view tmpl, std::span<const ChatMessage> messages,
                                          bool add_generation_prompt) {
  EDGEINF_ASSIGN_OR_RETURN(const ChatTemplate detected, detect_chat_template(tmpl));
  return render_chat(detected, messages, add_generation_prompt);
}

}  // namespace edgeinf
