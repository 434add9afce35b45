// Continuous batching seen from outside: requests batched with 15 others give exactly the text
// they give alone, and a client that disconnects mid-stream gives its slot back.
#include <doctest/doctest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <thread>

#include "tests/server/server_process.h"

namespace {

using namespace sbits::test;
using json = nlohmann::json;

constexpr int kRequests = 16;

// Request i of the batch: a mix of chat and completions, prompts of different lengths (so
// prefill rows of new requests share steps with decode rows of running ones), stop strings,
// and seeded top-k sampling at temperature > 0 for some (per-slot sampler state must not mix;
// a batch of top-k rows takes each row's candidates from the backend, any other all logits).
json request(int i, bool stream) {
  static const char* prompts[] = {"Once upon a time", "The cat", "Lily and Ben went to the park to play with a ball",
                                  "One day", "Tom had a big red truck. He", "The sun was", "Sam", "A little bird"};
  json r = {{"max_tokens", 24 + 5 * i}, {"stream", stream}, {"temperature", 0}};
  const std::string p = prompts[i % 8];
  if (i % 2 == 0) r["prompt"] = p;
  else r["messages"] = {{{"role", "user"}, {"content", p}}};
  if (i % 4 == 1) r["stop"] = json::array({".", "!"});
  if (i % 4 == 3) {  // top-k: alone, and in batches of such rows only, the backend selects it
    r["temperature"] = 0.9;
    r["seed"] = 1000 + i;
    r["top_k"] = i % 8 == 3 ? 40 : 12;
  }
  return r;
}

const char* path_of(const json& r) { return r.contains("prompt") ? "/v1/completions" : "/v1/chat/completions"; }

std::string text_alone(const ServerProcess& s, int i) {
  const json r = request(i, false);
  auto res = s.client().Post(path_of(r), r.dump(), "application/json");
  REQUIRE(res);
  REQUIRE_MESSAGE(res->status == 200, res->body);
  const json j = json::parse(res->body);
  const json& c = j["choices"][0];
  return c.contains("message") ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
}

std::string text_streamed(const ServerProcess& s, int i) {
  const json r = request(i, true);
  std::string body;
  httplib::Client c = s.client();
  httplib::Request req;
  req.method = "POST";
  req.path = path_of(r);
  req.body = r.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) { body.append(d, n); return true; };
  auto res = c.send(req);
  if (!res || res->status != 200) return "<HTTP error>";
  const StreamResult sr = parse_sse(body);
  return sr.done ? sr.text : "<no [DONE]>";
}

}  // namespace

TEST_CASE("16 concurrent streams each give exactly what the same request gives alone") {
  ServerProcess s(server_test_model("stories260K.sbits"), {"--parallel", "16"});
  std::vector<std::string> alone(kRequests);
  for (int i = 0; i < kRequests; ++i) alone[i] = text_alone(s, i);
  CHECK(fetch_metric(s, "sbits_slots_busy_peak") == 1);

  std::vector<std::string> batched(kRequests);
  std::barrier start(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      // Stagger a little so that some requests join while others are mid-generation.
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * (i % 4)));
      batched[i] = text_streamed(s, i);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    CAPTURE(i);
    CHECK(!alone[i].empty());
    CHECK(batched[i] == alone[i]);
  }
  // They really were batched: several slots were busy in the same steps.
  CHECK(fetch_metric(s, "sbits_slots_busy_peak") >= 4);
  CHECK(fetch_metric(s, "sbits_requests_completed_total") == 2 * kRequests);
  CHECK(fetch_metric(s, "sbits_slots_busy") == 0);
  CHECK(s.stop() == 0);
}

// Only top-k rows in the batch: the backend selects every row's candidates in one call, the
// rows' k differ (40 and 12), and each must still give what it gives alone.
TEST_CASE("concurrent top-k streams each give exactly what the same request gives alone") {
  ServerProcess s(server_test_model("stories260K.sbits"), {"--parallel", "4"});
  const int ids[] = {3, 7, 11, 15};
  std::vector<std::string> alone, batched(4);
  for (int i : ids) alone.push_back(text_alone(s, i));
  std::barrier start(4);
  std::vector<std::thread> threads;
  for (int j = 0; j < 4; ++j)
    threads.emplace_back([&, j] {
      start.arrive_and_wait();
      batched[size_t(j)] = text_streamed(s, ids[j]);
    });
  for (auto& t : threads) t.join();
  for (size_t j = 0; j < 4; ++j) {
    CAPTURE(ids[j]);
    CHECK(!alone[j].empty());
    CHECK(batched[j] == alone[j]);
  }
  CHECK(fetch_metric(s, "sbits_slots_busy_peak") >= 2);
  CHECK(s.stop() == 0);
}

TEST_CASE("a client that disconnects mid-stream cancels its generation and frees the slot") {
  // The 58M model generates slowly enough that the reply is far from done when we hang up.
  ServerProcess s(server_test_model("tech-llama-58m-bf16.sbits"), {"--parallel", "2", "--ctx", "1024"});
  int events = 0;
  httplib::Client c = s.client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = json{{"messages", {{{"role", "user"}, {"content", "Write about the kernel"}}}},
                  {"max_tokens", 900},
                  {"stream", true}}
                 .dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    events += static_cast<int>(std::count(d, d + n, '\n')) / 2;
    return events < 4;  // hang up after a few events
  };
  c.send(req);
  CHECK(events >= 4);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (fetch_metric(s, "sbits_slots_busy") != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(fetch_metric(s, "sbits_slots_busy") == 0);
  CHECK(fetch_metric(s, "sbits_requests_cancelled_total") == 1);
  CHECK(fetch_metric(s, "sbits_generated_tokens_total") < 900);
  CHECK(s.stop() == 0);
}
