// One model shared by sessions on several threads gives each session exactly the text it gives
// alone (greedy), and the C API's own shared state (handle registry, last error) holds up
// under concurrent use.
#include <atomic>
#include <thread>

#include "tests/capi/capi_test_util.h"

namespace {

using namespace sbits::capi_test;

// Greedy texts of `prompts`, n tokens each: one session per prompt, all on their own threads at
// once when `parallel`, else one after the other. Failures are collected, not CHECKed, off the
// main thread (doctest assertions are not thread-safe).
std::vector<std::string> generate_all(const sbits_model* m, const std::vector<std::string>& prompts, int n,
                                      bool parallel, int rounds = 1) {
  std::vector<std::string> texts(prompts.size());
  std::vector<std::string> errors(prompts.size());
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& p : prompts) ids.push_back(tokenize(m, p));
  auto run = [&](size_t i) {
    sbits_session* s = nullptr;
    if (sbits_session_create(m, nullptr, &s) != SBITS_OK) {
      errors[i] = sbits_last_error();
      return;
    }
    sbits_sampling_params sp = sbits_sampling_default_params();
    sp.temperature = 0;
    sbits_generate_params gp = sbits_generate_default_params();
    gp.max_tokens = n;
    for (int r = 0; r < rounds; ++r) {
      Collected c;
      sbits_session_reset(s);
      if (sbits_session_generate(s, ids[i].data(), static_cast<int32_t>(ids[i].size()), &sp, &gp, collect_token, &c,
                                 nullptr) != SBITS_OK)
        errors[i] = sbits_last_error();
      else if (r > 0 && c.text != texts[i])
        errors[i] = "round " + std::to_string(r) + " gave another text";
      texts[i] = c.text;
    }
    sbits_session_free(s);
  };
  if (parallel) {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < prompts.size(); ++i) threads.emplace_back(run, i);
    for (std::thread& t : threads) t.join();
  } else {
    for (size_t i = 0; i < prompts.size(); ++i) run(i);
  }
  for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
  return texts;
}

}  // namespace

TEST_CASE("stories260K: two sessions on two threads give the same greedy text as one at a time") {
  Model m;
  const std::vector<std::string> prompts = {"", "Once upon a time, there was a big dog"};
  const std::vector<std::string> alone = generate_all(m, prompts, 200, false);
  CHECK(alone[0] + "\n" == golden_text());
  const std::vector<std::string> together = generate_all(m, prompts, 200, true, 3);
  CHECK(together[0] == alone[0]);
  CHECK(together[1] == alone[1]);
}

TEST_CASE("tech-llama-58m: two sessions on two threads give the same greedy text as one at a time") {
  Model m(model_path("tech-llama-58m-bf16.sbits"));
  const std::vector<std::string> prompts = {"The kernel scheduler", "To configure the network interface,"};
  const std::vector<std::string> alone = generate_all(m, prompts, 24, false);
  const std::vector<std::string> together = generate_all(m, prompts, 24, true);
  CHECK(together[0] == alone[0]);
  CHECK(together[1] == alone[1]);
  CHECK(alone[0] != alone[1]);
}

TEST_CASE("the last error is per thread") {
  Model m;
  std::string other;
  std::thread t([&] {
    sbits_tokenize(m, nullptr, 5, 0, nullptr, 0);
    other = sbits_last_error();
  });
  t.join();
  sbits_session_reset(nullptr);
  CHECK(std::string(sbits_last_error()).rfind("sbits_session_reset: ", 0) == 0);
  CHECK(other.rfind("sbits_tokenize: ", 0) == 0);
}

TEST_CASE("handles created, used and freed on many threads at once") {
  Model m;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        sbits_session* s = nullptr;
        if (sbits_session_create(m, nullptr, &s) != SBITS_OK) ++failures;
        if (sbits_tokenize(m, "abc", 3, 0, nullptr, 0) <= 0) ++failures;
        if (sbits_session_n_past(s) != 0) ++failures;
        // (No double free here: another thread may already have a new session at that address.)
        if (sbits_session_free(s) != SBITS_OK) ++failures;
      }
    });
  for (std::thread& t : threads) t.join();
  CHECK(failures.load() == 0);
}
