// Chat and text completions: from a parsed request to a job on the scheduler, and from the
// job's output to a whole JSON reply or a stream of server-sent events.
#pragma once

#include <memory>
#include <vector>

#include "engine/text/chat_template.h"
#include "engine/text/tokenizer.h"
#include "server/http_server.h"
#include "server/job.h"
#include "server/openai_response.h"

namespace sbits::server {

// What the request needs from the loaded model.
struct PromptContext {
  const Tokenizer& tokenizer;
  const ChatTemplate& chat_template;
  const std::vector<int32_t>& template_stop_tokens;  // control tokens among the template's stops
  int n_ctx = 0;
};

// Renders and tokenizes the prompt and checks it against the context: 400 when it does not
// leave room for one generated token, or when token ids are out of the vocabulary.
Parsed<GenerationRequest> prepare_generation(const CompletionRequest& request, const PromptContext& context);

struct ReplyOptions {
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
};

// Waits for the job and answers with one JSON body (errors in OpenAI's shape).
HttpResponse whole_reply(const std::shared_ptr<Job>& job, const ResponseMeta& meta, const ReplyOptions& options,
                         const Tokenizer& tokenizer);
// A text/event-stream response that forwards the job's output as it comes. The job is
// cancelled as soon as the client is gone (a write fails, or the response is dropped unsent).
HttpResponse streamed_reply(std::shared_ptr<Job> job, const ResponseMeta& meta, const ReplyOptions& options,
                            const Tokenizer& tokenizer);

}  // namespace sbits::server
