#include "net/api/chat_template.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace bouquet::net::api {

ChatTemplate chat_template_from_text(std::string_view jinja) {
  if (jinja.find("<|im_start|>") != std::string_view::npos) return ChatTemplate::chatml;
  if (jinja.find("<|start_header_id|>") != std::string_view::npos) return ChatTemplate::llama3;
  if (jinja.find("[INST]") != std::string_view::npos) return ChatTemplate::llama2;
  return ChatTemplate::plain;
}

ChatTemplate load_chat_template(const std::filesystem::path& model_dir) {
  std::ifstream in(model_dir / "tokenizer_config.json");
  if (!in) return ChatTemplate::plain;
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return ChatTemplate::plain;
  auto it = config.find("chat_template");
  if (it == config.end()) return ChatTemplate::plain;
  if (it->is_string()) return chat_template_from_text(it->get<std::string>());
  if (it->is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return chat_template_from_text(entry["template"].get<std::string>());
      }
    }
  }
  return ChatTemplate::plain;
}

std::string_view to_string(ChatTemplate kind) {
  switch (kind) {
    case ChatTemplate::plain:
      return "plain";
    case ChatTemplate::chatml:
      return "chatml";
    case ChatTemplate::llama3:
      return "llama3";
    case ChatTemplate::llama2:
      return "llama2";
  }
  return "plain";
}

namespace {

std::string llama2(const std::vector<ChatMessage>& messages) {
  // <s> is the tokenizer's BOS; each user turn is [INST] ... [/INST], a system message folds into
  // the first user turn.
  std::string out, system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system" || m.role == "developer") {
      system += m.content;
    } else if (m.role == "user") {
      const std::string text =
          system.empty() ? m.content : fmt::format("<<SYS>>\n{}\n<</SYS>>\n\n{}", system, m.content);
      system.clear();
      out += fmt::format("{}[INST] {} [/INST]", out.empty() ? "" : "<s>", text);
    } else {
      out += fmt::format(" {} </s>", m.content);
    }
  }
  return out;
}

}  // namespace

std::string apply_chat_template(ChatTemplate kind, const std::vector<ChatMessage>& messages) {
  std::string out;
  switch (kind) {
    case ChatTemplate::chatml:
      for (const ChatMessage& m : messages) {
        out += fmt::format("<|im_start|>{}\n{}<|im_end|>\n", m.role == "developer" ? "system" : m.role, m.content);
      }
      return out + "<|im_start|>assistant\n";
    case ChatTemplate::llama3:
      for (const ChatMessage& m : messages) {
        out += fmt::format("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                           m.role == "developer" ? "system" : m.role, m.content);
      }
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatTemplate::llama2:
      return llama2(messages);
    case ChatTemplate::plain:
      break;
  }
  for (const ChatMessage& m : messages) out += fmt::format("{}: {}\n", m.role, m.content);
  return out + "assistant:";
}

}  // namespace bouquet::net::api
