// A conversation with an instruct model, one turn at a time, over one session that stays open
// across turns, whatever runs the blocks: every block in this process (LocalChat, `chat --local`)
// or a swarm (net::SwarmChat, `chat --peers`). Each turn renders the whole conversation with the
// model's chat template but feeds only what the session does not hold yet (the new user message
// and the template's markers); when the rendering no longer starts with what is cached (the
// answer's text encodes to other ids than were generated), the session is cut back to the
// longest common prefix first. The answer to a turn is what a fresh generation over the whole
// conversation's prompt would give.
#pragma once

#include "gpu/chat_template.h"
#include "gpu/generation.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

class ClientHead;

// What a chat's turns run on: the generation loop's steps over one session kept open across
// turns.
class ChatSteps : public GenerationSteps {
 public:
  // Called before each turn's first step with the positions the turn keeps (never more than the
  // session holds): the session drops the rest, and that step feeds from there.
  virtual void truncate(int64_t length) = 0;
};

struct ChatOptions {
  int64_t max_new_tokens = 256;  // most tokens of one answer
  SamplingConfig sampling;
  int64_t max_length = 0;  // positions the session holds: the conversation and the answer
};

class Chat {
 public:
  // `head`, `tokenizer` and `steps` outlive the chat.
  Chat(const ClientHead& head, const Tokenizer& tokenizer, ChatTemplate chat_template, ChatSteps& steps,
       ChatOptions options);

  // Adds the user's message, generates the assistant's answer (streamed to on_text as it comes)
  // and keeps both in the conversation. Throws InputError when the conversation and a full
  // answer would not fit max_length; whatever the steps throw passes through, the conversation
  // unchanged.
  std::string reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text = {});

  // The session lost what it held (a fresh one took its place): the next turn feeds everything.
  void forget_cache() { cached_ids_.clear(); }

  // Tokens the last reply() fed before generating (the part of the prompt not cached yet).
  int64_t last_fed_tokens() const { return last_fed_; }
  // Tokens of the last reply()'s whole prompt (the conversation rendered).
  int64_t last_prompt_tokens() const { return last_prompt_; }
  // The last answer's ids, without the end-of-turn token that closed it.
  const std::vector<TokenId>& last_ids() const { return last_ids_; }
  const std::vector<ChatMessage>& messages() const { return messages_; }

 private:
  const ClientHead& head_;
  const Tokenizer& tokenizer_;
  ChatTemplate template_;
  ChatSteps& steps_;
  ChatOptions options_;
  std::vector<ChatMessage> messages_;
  std::vector<TokenId> cached_ids_;  // the ids whose keys and values the session holds, in order
  std::vector<TokenId> last_ids_;
  int64_t last_fed_ = 0;
  int64_t last_prompt_ = 0;
};

}  // namespace bouquet::gpu
