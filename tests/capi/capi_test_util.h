// Helpers shared by the C API tests: owning wrappers, greedy generation into a string, and
// checks that a call failed the documented way.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sbits.h"
#include "tests/engine/engine_test_models.h"
#include "tests/test_data.h"

namespace sbits::capi_test {

// The message of the last failed call on this thread, as a std::string.
inline std::string last_error() { return sbits_last_error(); }

// A failed call returned `status`, and the thread's last error names the function.
#define CHECK_FAILS_WITH(expr, status, fn)                                        \
  do {                                                                             \
    const int32_t rc_ = (expr);                                                    \
    CHECK_MESSAGE(rc_ == (status), #expr << " returned " << sbits_status_name(rc_) \
                                        << ": " << sbits_last_error());            \
    CHECK_MESSAGE(std::string(sbits_last_error()).rfind(fn ": ", 0) == 0,          \
                  "last error: " << sbits_last_error());                           \
  } while (0)

inline std::string model_path(const std::string& name = "stories260K.sbits") { return test::engine_model(name); }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string golden_text() { return read_file(test::data_path("golden/stories260K_greedy200_expected.txt")); }

struct Model {
  sbits_model* m = nullptr;
  explicit Model(const std::string& path = model_path(), const sbits_model_params* p = nullptr) {
    REQUIRE_MESSAGE(sbits_model_load(path.c_str(), p, &m) == SBITS_OK, sbits_last_error());
  }
  ~Model() { sbits_model_free(m); }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  operator sbits_model*() const { return m; }
};

struct Session {
  sbits_session* s = nullptr;
  explicit Session(const sbits_model* m, const sbits_session_params* p = nullptr) {
    REQUIRE_MESSAGE(sbits_session_create(m, p, &s) == SBITS_OK, sbits_last_error());
  }
  ~Session() { sbits_session_free(s); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  operator sbits_session*() const { return s; }
};

inline std::vector<int32_t> tokenize(const sbits_model* m, const std::string& text,
                                     uint32_t flags = SBITS_TOKENIZE_ADD_BOS) {
  const int32_t n = sbits_tokenize(m, text.data(), text.size(), flags, nullptr, 0);
  REQUIRE_MESSAGE(n >= 0, sbits_last_error());
  std::vector<int32_t> ids(static_cast<size_t>(n));
  REQUIRE(sbits_tokenize(m, text.data(), text.size(), flags, ids.data(), n) == n);
  return ids;
}

// What a generation passed to its callback.
struct Collected {
  std::string text;
  std::vector<int32_t> tokens;
  sbits_generate_result result{};
};

inline int collect_token(const char* text, size_t len, int32_t token, void* user_data) {
  auto* c = static_cast<Collected*>(user_data);
  c->text.append(text, len);
  if (token >= 0) c->tokens.push_back(token);
  return 0;
}

// Greedy generation of n tokens after `prompt` (BOS added), through the C API.
inline Collected greedy(sbits_session* s, const sbits_model* m, const std::string& prompt, int n,
                        const sbits_generate_params* extra = nullptr) {
  Collected c;
  sbits_sampling_params sp = sbits_sampling_default_params();
  sp.temperature = 0;
  sbits_generate_params gp = extra ? *extra : sbits_generate_default_params();
  gp.max_tokens = n;
  c.result.struct_size = sizeof c.result;
  const std::vector<int32_t> ids = tokenize(m, prompt);
  const sbits_status st =
      sbits_session_generate(s, ids.data(), static_cast<int32_t>(ids.size()), &sp, &gp, collect_token, &c, &c.result);
  REQUIRE_MESSAGE(st == SBITS_OK, sbits_last_error());
  return c;
}

}  // namespace sbits::capi_test
