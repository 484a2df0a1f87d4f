// The OpenAI-compatible API's pure parts: request validation (what a client gets back for a bad
// field), SSE framing, stop texts across streamed pieces, chat templates, penalties, and the
// response bodies' shapes that client libraries read.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu/chat_template.h"
#include "gpu/errors.h"
#include "net/api/api_request.h"
#include "net/api/api_response.h"
#include "net/api/api_swarm.h"
#include "net/api/sse.h"
#include "net/api/stop_text.h"

namespace bouquet::net::api {
namespace {

using nlohmann::json;

// The ApiError a completions body raises (fails the test when it parses).
ApiError completion_error(const std::string& body) {
  try {
    parse_completion_request(body);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "", "", "");
}

TEST(ApiRequest, BadJsonIsA400InOpenAisErrorShape) {
  const ApiError e = completion_error("{\"model\": ");
  EXPECT_EQ(e.status(), 400);
  const json body = json::parse(e.json());
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("could not parse the JSON body"), std::string::npos);
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_TRUE(body["error"]["code"].is_null());
  EXPECT_EQ(completion_error("[1, 2]").status(), 400);
}

TEST(ApiRequest, EachBadFieldIsNamedInParam) {
  const std::string m = R"("model": "m", "prompt": "hi", )";
  EXPECT_EQ(completion_error(R"({"prompt": "hi"})").param(), "model");
  EXPECT_EQ(completion_error(R"({"model": 3, "prompt": "hi"})").param(), "model");
  EXPECT_EQ(completion_error(R"({"model": "m"})").param(), "prompt");
  EXPECT_EQ(completion_error("{" + m + R"("temperature": 2.5})").param(), "temperature");
  EXPECT_EQ(completion_error("{" + m + R"("temperature": "hot"})").param(), "temperature");
  EXPECT_EQ(completion_error("{" + m + R"("top_p": 1.5})").param(), "top_p");
  EXPECT_EQ(completion_error("{" + m + R"("max_tokens": 0})").param(), "max_tokens");
  EXPECT_EQ(completion_error("{" + m + R"("max_tokens": -5})").param(), "max_tokens");
  EXPECT_EQ(completion_error("{" + m + R"("max_tokens": 1.5})").param(), "max_tokens");
  EXPECT_EQ(completion_error("{" + m + R"("presence_penalty": -3})").param(), "presence_penalty");
  EXPECT_EQ(completion_error("{" + m + R"("stop": ["a","b","c","d","e"]})").param(), "stop");
  EXPECT_EQ(completion_error("{" + m + R"("stop": [""]})").param(), "stop");
  EXPECT_EQ(completion_error("{" + m + R"("n": 2})").param(), "n");
  EXPECT_EQ(completion_error("{" + m + R"("logprobs": 3})").param(), "logprobs");
  EXPECT_EQ(completion_error("{" + m + R"("stream": "yes"})").param(), "stream");
  EXPECT_EQ(completion_error("{" + m + R"("stream_options": {"include_usage": true}})").param(), "stream_options");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": ["a", "b"]})").param(), "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": [1, -2]})").param(), "prompt");
  EXPECT_EQ(completion_error(R"({"model": "m", "prompt": []})").param(), "prompt");
}

TEST(ApiRequest, ValidCompletionKeepsEveryFieldAndOpenAisDefaults) {
  const CompletionRequest plain = parse_completion_request(R"({"model": "m", "prompt": "hello"})");
  EXPECT_EQ(plain.model, "m");
  EXPECT_EQ(plain.prompt_text, "hello");
  EXPECT_EQ(plain.max_tokens, 16);
  EXPECT_EQ(plain.temperature, 1.0);
  EXPECT_FALSE(plain.stream);
  const CompletionRequest full = parse_completion_request(
      R"({"model": "m", "prompt": [[5, 6, 7]], "max_tokens": 9, "temperature": 0, "top_p": 0.5, "stop": "\n",
          "seed": 42, "presence_penalty": 1, "frequency_penalty": -0.5, "stream": true,
          "stream_options": {"include_usage": true}, "user": "u", "n": 1, "logprobs": null})");
  EXPECT_EQ(full.prompt_ids, (std::vector<int64_t>{5, 6, 7}));
  EXPECT_FALSE(full.prompt_text);
  EXPECT_EQ(full.max_tokens, 9);
  EXPECT_EQ(full.temperature, 0.0);
  EXPECT_EQ(full.top_p, 0.5);
  EXPECT_EQ(full.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(full.seed, 42u);
  EXPECT_EQ(full.presence_penalty, 1.0);
  EXPECT_EQ(full.frequency_penalty, -0.5);
  EXPECT_TRUE(full.stream);
  EXPECT_TRUE(full.include_usage);
}

TEST(ApiRequest, ChatTakesStringOrTextPartsAndRefusesUnknownRoles) {
  const CompletionRequest chat = parse_chat_request(
      R"({"model": "m", "messages": [{"role": "system", "content": "be brief"},
          {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}]})");
  ASSERT_EQ(chat.messages.size(), 2u);
  EXPECT_EQ(chat.messages[1].role, "user");
  EXPECT_EQ(chat.messages[1].content, "hi there");
  EXPECT_EQ(chat.max_tokens, 0);  // the rest of the context, as OpenAI's chat default
  try {
    parse_chat_request(R"({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "messages.[0].role");
    EXPECT_NE(std::string(e.what()).find("wizard"), std::string::npos);
  }
  EXPECT_THROW(parse_chat_request(R"({"model": "m", "messages": []})"), ApiError);
  EXPECT_THROW(
      parse_chat_request(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
      ApiError);
}

TEST(Sse, EachPayloadLineIsADataFieldAndTheEventEndsWithABlankLine) {
  EXPECT_EQ(sse_event(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_event("one\ntwo\r\nthree\rfour"), "data: one\ndata: two\ndata: three\ndata: four\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // A JSON chunk whose text holds newlines stays one line: the framing never splits it.
  const std::string chunk = chunk_json({false, "cmpl-1", 1, "m"}, "a\n\nb", std::nullopt);
  EXPECT_EQ(sse_event(chunk), "data: " + chunk + "\n\n");
}

TEST(StopText, AStopStraddlingPiecesIsCutAndNeverShown) {
  StopText stops({"END"});
  EXPECT_EQ(stops.push("hello E"), "hello ");  // "E" might begin END
  EXPECT_EQ(stops.push("N"), "");
  EXPECT_EQ(stops.push("D and more"), "");
  EXPECT_TRUE(stops.stopped());
  EXPECT_EQ(stops.push("later"), "");
  EXPECT_EQ(stops.finish(), "");
}

TEST(StopText, AHeldTailThatTurnsOutNotToBeAStopIsReleased) {
  StopText stops({"END", "\n\n"});
  EXPECT_EQ(stops.push("x E"), "x ");
  EXPECT_EQ(stops.push("NX"), "ENX");
  EXPECT_EQ(stops.push("a\n"), "a");
  EXPECT_EQ(stops.finish(), "\n");
  EXPECT_FALSE(stops.stopped());
  StopText earliest({"c", "ab"});
  EXPECT_EQ(earliest.push("xxabc"), "xx");  // the first place any stop text appears, whatever its order
}

TEST(ApiChatTemplate, TheApiAppliesBouquetChatsTemplatesAndPlainForAModelWithoutOne) {
  // A folder without tokenizer_config.json (the tiny random models): the plain concatenation.
  const gpu::ChatTemplate none = gpu::load_chat_template("/nonexistent/folder", "", /*plain_without_template=*/true);
  EXPECT_EQ(none.format, gpu::ChatFormat::plain);
  const std::vector<gpu::ChatMessage> messages = {{"system", "be brief"}, {"user", "hi"}};
  EXPECT_EQ(gpu::render_chat(none, messages), "system: be brief\nuser: hi\nassistant:");
  EXPECT_EQ(gpu::render_chat(gpu::ChatTemplate{gpu::ChatFormat::chatml, ""}, messages),
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  // `bouquet chat` itself still asks for a template rather than guess one.
  EXPECT_THROW(gpu::load_chat_template("/nonexistent/folder"), gpu::InputError);
}

TEST(Penalties, FrequencyCountsOccurrencesPresenceCountsOnce) {
  std::vector<float> logits = {1, 1, 1, 1};
  gpu::apply_penalties(logits, std::vector<gpu::TokenId>{2, 2, 3}, 0.5, 0.25);
  EXPECT_FLOAT_EQ(logits[0], 1);
  EXPECT_FLOAT_EQ(logits[2], 1 - 0.5 - 2 * 0.25);
  EXPECT_FLOAT_EQ(logits[3], 1 - 0.5 - 0.25);
  gpu::apply_penalties(logits, std::vector<gpu::TokenId>{99, -1}, 1, 1);  // ids outside the vocabulary change nothing
  EXPECT_FLOAT_EQ(logits[0], 1);
}

TEST(ApiResponse, BodiesHaveTheFieldsClientLibrariesRead) {
  const ResponseHead chat{true, "chatcmpl-1", 7, "tiny"};
  const json whole = json::parse(completion_json(chat, "hey", "length", {3, 4}));
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["content"], "hey");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(whole["usage"]["total_tokens"], 7);
  const json first = json::parse(chunk_json(chat, "", std::nullopt, true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = json::parse(chunk_json(chat, "", std::string("stop")));
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  const json text = json::parse(completion_json({false, "cmpl-1", 7, "tiny"}, "a\xff", "stop", {1, 1}));
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "a\xef\xbf\xbd");  // invalid UTF-8 replaced, not thrown on
  EXPECT_EQ(json::parse(models_json("tiny", 7))["data"][0]["id"], "tiny");
}

}  // namespace
}  // namespace bouquet::net::api
