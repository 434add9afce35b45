// Generation through the C API: the golden text, seeds, stop strings, callbacks that stop,
// context reuse between calls, re-entrant calls, and cancellation from another thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

#include "tests/capi/capi_test_util.h"

namespace {

using namespace sbits::capi_test;

sbits_generate_params gen_params(int max_tokens) {
  sbits_generate_params gp = sbits_generate_default_params();
  gp.max_tokens = max_tokens;
  return gp;
}

}  // namespace

TEST_CASE("stories260K greedy through the C API prints llama2.c's golden text") {
  Model m;
  Session s(m);
  const Collected c = greedy(s, m, "", 200);
  CHECK(c.text + "\n" == golden_text());
  CHECK(c.tokens.size() == 200);
  CHECK(c.result.stop_reason == SBITS_STOP_LENGTH);
  CHECK(c.result.generated_tokens == 200);
  CHECK(c.result.prompt_tokens == 1);
  CHECK(c.result.cached_tokens == 0);
  // The pieces are the tokens' text: detokenizing the ids gives the same text.
  std::vector<int32_t> ids = {1};
  ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
  std::string text(c.text.size() + 1, '\0');
  CHECK(sbits_detokenize(m, ids.data(), static_cast<int32_t>(ids.size()), text.data(),
                         static_cast<int32_t>(text.size())) == static_cast<int32_t>(c.text.size()));
  CHECK(text.c_str() == c.text);
}

TEST_CASE("the session reuses the context it shares with the next prompt") {
  Model m;
  Session s(m);
  const Collected first = greedy(s, m, "Once upon a time", 30);
  const int32_t n_prompt = first.result.prompt_tokens;
  CHECK(sbits_session_n_past(s) == n_prompt + 29);  // the last generated token is not computed yet
  // The same prompt again: all but its last token are already computed, and the text is the same.
  const Collected again = greedy(s, m, "Once upon a time", 30);
  CHECK(again.result.cached_tokens == n_prompt - 1);
  CHECK(again.text == first.text);
  // The prompt followed by the reply: the whole reply is reused, and generation goes on from it.
  const Collected longer = greedy(s, m, "Once upon a time" + first.text, 10);
  CHECK(longer.result.cached_tokens >= n_prompt + 20);
  // A different prompt starts over; reset forgets everything.
  const Collected other = greedy(s, m, "The cat", 5);
  CHECK(other.result.cached_tokens == 1);  // only BOS is shared
  REQUIRE(sbits_session_reset(s) == SBITS_OK);
  CHECK(sbits_session_n_past(s) == 0);
  CHECK(greedy(s, m, "", 200).text + "\n" == golden_text());
}

TEST_CASE("a seed gives the same text every time, another seed another text") {
  Model m;
  Session s(m);
  const std::vector<int32_t> ids = tokenize(m, "Once upon a time");
  auto sample = [&](uint64_t seed) {
    Collected c;
    sbits_sampling_params sp = sbits_sampling_default_params();
    sp.temperature = 1.0f;
    sp.seed = seed;
    const sbits_generate_params gp = gen_params(60);
    REQUIRE(sbits_session_generate(s, ids.data(), static_cast<int32_t>(ids.size()), &sp, &gp, collect_token, &c,
                                   nullptr) == SBITS_OK);
    return c.text;
  };
  CHECK(sample(7) == sample(7));
  CHECK(sample(7) != sample(8));

  // A caller built against an older header whose sampling struct ends before `seed` gets the
  // default seed (random) and every field it did set.
  sbits_sampling_params old = sbits_sampling_default_params();
  old.struct_size = offsetof(sbits_sampling_params, seed);
  old.temperature = 0;
  old.seed = 7;  // beyond struct_size: must not be read
  Collected c;
  const sbits_generate_params gp = gen_params(200);
  const std::vector<int32_t> bos = tokenize(m, "");
  REQUIRE(sbits_session_generate(s, bos.data(), 1, &old, &gp, collect_token, &c, nullptr) == SBITS_OK);
  CHECK(c.text + "\n" == golden_text());
}

TEST_CASE("stop strings end generation before the stop text; chat_stops adds the template's") {
  Model m;
  Session s(m);
  const std::string golden = golden_text();
  const size_t at = golden.find("red ball");
  REQUIRE(at != std::string::npos);
  const char* stops[2] = {"never appears", "red ball"};
  sbits_generate_params gp = gen_params(200);
  gp.stop_strings = stops;
  gp.n_stop_strings = 2;
  const Collected c = greedy(s, m, "", 200, &gp);
  CHECK(c.text == golden.substr(0, at));
  CHECK(c.result.stop_reason == SBITS_STOP_STRING);

  // "plain" (the model has no template) stops at "\nUser:"; the golden text has none, so only
  // checking the plumbing: the call succeeds and runs to the length limit.
  sbits_generate_params chat = gen_params(50);
  chat.chat_stops = 1;
  CHECK(greedy(s, m, "", 50, &chat).result.stop_reason == SBITS_STOP_LENGTH);
  chat.chat_template = "chatml";
  CHECK(greedy(s, m, "", 50, &chat).result.stop_reason == SBITS_STOP_LENGTH);
}

TEST_CASE("a callback returning non-zero stops at once; max_tokens 0 only computes the prompt") {
  Model m;
  Session s(m);
  struct State {
    int calls = 0;
  } st;
  auto stop_at_3 = [](const char*, size_t, int32_t, void* u) -> int { return ++static_cast<State*>(u)->calls == 3; };
  const std::vector<int32_t> ids = tokenize(m, "");
  sbits_sampling_params sp = sbits_sampling_default_params();
  sp.temperature = 0;
  const sbits_generate_params gp = gen_params(100);
  sbits_generate_result r{};
  r.struct_size = sizeof r;
  REQUIRE(sbits_session_generate(s, ids.data(), 1, &sp, &gp, stop_at_3, &st, &r) == SBITS_OK);
  CHECK(st.calls == 3);
  CHECK(r.stop_reason == SBITS_STOP_CALLBACK);
  CHECK(r.generated_tokens == 3);

  const sbits_generate_params none = gen_params(0);
  st.calls = 0;
  REQUIRE(sbits_session_reset(s) == SBITS_OK);
  REQUIRE(sbits_session_generate(s, ids.data(), 1, &sp, &none, stop_at_3, &st, &r) == SBITS_OK);
  CHECK(st.calls == 0);
  CHECK(r.generated_tokens == 0);
  CHECK(sbits_session_n_past(s) == 1);
  // A NULL callback is allowed.
  REQUIRE(sbits_session_generate(s, ids.data(), 1, &sp, &gp, nullptr, nullptr, &r) == SBITS_OK);
  CHECK(r.generated_tokens == 100);
}

TEST_CASE("calls on a session from inside its own callback fail with SBITS_ERR_BUSY") {
  Model m;
  Session s(m);
  struct State {
    sbits_session* s;
    int statuses[3] = {0, 0, 0};
    std::string first_error;
  } st{s};
  auto cb = [](const char*, size_t, int32_t, void* u) -> int {
    auto* state = static_cast<State*>(u);
    state->statuses[0] = sbits_session_reset(state->s);
    state->first_error = sbits_last_error();
    state->statuses[1] = sbits_session_free(state->s);
    state->statuses[2] = sbits_session_n_past(state->s);
    return 1;
  };
  const std::vector<int32_t> ids = tokenize(m, "");
  REQUIRE(sbits_session_generate(s, ids.data(), 1, nullptr, nullptr, cb, &st, nullptr) == SBITS_OK);
  CHECK(st.statuses[0] == SBITS_ERR_BUSY);
  CHECK(st.statuses[1] == SBITS_ERR_BUSY);
  CHECK(st.statuses[2] == SBITS_ERR_BUSY);
  CHECK(st.first_error.rfind("sbits_session_reset: ", 0) == 0);
  CHECK(sbits_session_n_past(s) == 1);  // usable again once the call returned
}

TEST_CASE("cancel from the callback's own thread stops before the next token") {
  Model m;
  Session s(m);
  struct State {
    sbits_session* s;
    int calls = 0;
  } st{s};
  auto cb = [](const char*, size_t, int32_t, void* u) -> int {
    auto* state = static_cast<State*>(u);
    if (++state->calls == 5) REQUIRE(sbits_session_cancel(state->s) == SBITS_OK);
    return 0;
  };
  const std::vector<int32_t> ids = tokenize(m, "");
  sbits_generate_result r{};
  r.struct_size = sizeof r;
  const sbits_generate_params gp = gen_params(100);
  REQUIRE(sbits_session_generate(s, ids.data(), 1, nullptr, &gp, cb, &st, &r) == SBITS_OK);
  CHECK(st.calls == 5);
  CHECK(r.stop_reason == SBITS_STOP_CANCELLED);
  CHECK(r.generated_tokens == 5);

  // A cancel while nothing runs does not stop the next generation.
  REQUIRE(sbits_session_cancel(s) == SBITS_OK);
  const Collected c = greedy(s, m, "", 200);
  CHECK(c.result.stop_reason == SBITS_STOP_LENGTH);
  CHECK(c.text + "\n" == golden_text());
}

TEST_CASE("cancel from another thread stops generation within one token") {
  Model m;
  Session s(m);
  // The callback wakes the canceller at its third token; the canceller cancels a little later,
  // while the generating thread is somewhere in the next tokens, and records how many tokens had
  // reached the callback when sbits_session_cancel returned.
  struct State {
    std::atomic<int> delivered{0};
    std::atomic<int> at_cancel{-1};
    std::mutex mu;
    std::condition_variable cv;
    bool go = false;
  } st;
  auto cb = [](const char*, size_t, int32_t token, void* u) -> int {
    auto* state = static_cast<State*>(u);
    if (token < 0) return 0;
    if (state->delivered.fetch_add(1) + 1 == 3) {
      std::lock_guard<std::mutex> lock(state->mu);
      state->go = true;
      state->cv.notify_one();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // slow enough that cancel lands mid-run
    return 0;
  };
  std::thread canceller([&] {
    std::unique_lock<std::mutex> lock(st.mu);
    st.cv.wait(lock, [&] { return st.go; });
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(7));
    REQUIRE(sbits_session_cancel(s) == SBITS_OK);
    st.at_cancel.store(st.delivered.load());
  });
  const std::vector<int32_t> ids = tokenize(m, "");
  sbits_generate_result r{};
  r.struct_size = sizeof r;
  const sbits_generate_params gp = gen_params(-1);  // no limit but the 512-token context
  const sbits_status rc = sbits_session_generate(s, ids.data(), 1, nullptr, &gp, cb, &st, &r);
  canceller.join();
  REQUIRE(rc == SBITS_OK);
  CHECK(r.stop_reason == SBITS_STOP_CANCELLED);
  REQUIRE(st.at_cancel.load() >= 3);
  CHECK(st.delivered.load() <= st.at_cancel.load() + 1);
  CHECK(r.generated_tokens == st.delivered.load());
}
