#include "gpu/chat_template.h"

#include "gpu/errors.h"
#include "gpu/gguf.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace bouquet::gpu {
namespace {

// SmolLM2-style templates: "{{ '<|im_start|>system\nYOU ARE ...<|im_end|>\n' }}" written when the
// first message is not a system one. The text between is the default system message; in the
// template's source the newline is the two characters \n.
std::string chatml_default_system(std::string_view text) {
  constexpr std::string_view kStart = "<|im_start|>system\\n";
  const size_t begin = text.find(kStart);
  if (begin == std::string_view::npos) return "";
  const size_t end = text.find("<|im_end|>", begin);
  if (end == std::string_view::npos) return "";
  std::string message(text.substr(begin + kStart.size(), end - begin - kStart.size()));
  if (message.find('{') != std::string::npos || message.find('\'') != std::string::npos) return "";  // a variable
  return message;
}

std::string system_of(const ChatTemplate& chat, const std::vector<ChatMessage>& messages) {
  if (!messages.empty() && messages[0].role == "system") return messages[0].content;
  return chat.default_system;
}

}  // namespace

std::optional<ChatFormat> parse_chat_format(std::string_view name) {
  if (name == "chatml") return ChatFormat::chatml;
  if (name == "llama2") return ChatFormat::llama2;
  if (name == "llama3") return ChatFormat::llama3;
  if (name == "plain") return ChatFormat::plain;
  return std::nullopt;
}

ChatTemplate recognize_chat_template(std::string_view text, std::string_view source) {
  ChatTemplate chat;
  if (text.find("<|im_start|>") != std::string_view::npos) {
    chat.format = ChatFormat::chatml;
    chat.default_system = chatml_default_system(text);
  } else if (text.find("<|start_header_id|>") != std::string_view::npos) {
    chat.format = ChatFormat::llama3;
  } else if (text.find("[INST]") != std::string_view::npos) {
    chat.format = ChatFormat::llama2;
  } else {
    throw InputError(
        fmt::format("{}: the chat template is none Bouquet recognizes (ChatML, Llama-2, Llama-3); "
                    "choose one with --chat-template chatml|llama2|llama3",
                    source));
  }
  return chat;
}

std::string_view to_string(ChatFormat format) {
  switch (format) {
    case ChatFormat::chatml:
      return "chatml";
    case ChatFormat::llama2:
      return "llama2";
    case ChatFormat::llama3:
      return "llama3";
    case ChatFormat::plain:
      return "plain";
  }
  return "plain";
}

ChatTemplate load_chat_template(const std::filesystem::path& model, std::string_view forced,
                                bool plain_without_template) {
  if (!forced.empty()) {
    const auto format = parse_chat_format(forced);
    if (!format) throw InputError(fmt::format("--chat-template '{}' is not chatml, llama2, llama3 or plain", forced));
    return ChatTemplate{*format, ""};
  }
  std::string text;
  std::string source;
  if (is_gguf_path(model)) {
    const GgufFile file(model);
    source = fmt::format("{} (metadata 'tokenizer.chat_template')", model.string());
    if (file.has("tokenizer.chat_template")) text = file.string("tokenizer.chat_template");
  } else {
    const auto config = model / "tokenizer_config.json";
    source = config.string();
    std::ifstream in(config);
    if (in) {
      std::stringstream bytes;
      bytes << in.rdbuf();
      const auto json = nlohmann::json::parse(bytes.str(), nullptr, /*allow_exceptions=*/false);
      if (json.is_object() && json.contains("chat_template") && json["chat_template"].is_string()) {
        text = json["chat_template"].get<std::string>();
      }
    }
  }
  if (text.empty() && plain_without_template) return ChatTemplate{ChatFormat::plain, ""};
  if (text.empty()) {
    throw InputError(
        fmt::format("{}: the model has no chat template; choose one with --chat-template "
                    "chatml|llama2|llama3",
                    source));
  }
  return recognize_chat_template(text, source);
}

std::string render_chat(const ChatTemplate& chat, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  std::string out;
  const std::string system = system_of(chat, messages);
  const size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
  switch (chat.format) {
    case ChatFormat::chatml:
      if (!system.empty()) out += "<|im_start|>system\n" + system + "<|im_end|>\n";
      for (size_t i = first; i < messages.size(); ++i) {
        out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatFormat::llama3:
      out += "<|begin_of_text|>";
      if (!system.empty()) out += "<|start_header_id|>system<|end_header_id|>\n\n" + system + "<|eot_id|>";
      for (size_t i = first; i < messages.size(); ++i) {
        out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + messages[i].content + "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::plain:
      for (const ChatMessage& m : messages) out += m.role + ": " + m.content + "\n";
      if (add_generation_prompt) out += "assistant:";
      break;
    case ChatFormat::llama2: {
      // <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]
      bool first_user = true;
      for (size_t i = first; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "user") {
          std::string content = m.content;
          if (first_user && !system.empty()) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
          first_user = false;
          out += "<s>[INST] " + content + " [/INST]";
        } else if (m.role == "assistant") {
          out += " " + m.content + " </s>";
        }
      }
      break;
    }
  }
  return out;
}

}  // namespace bouquet::gpu
