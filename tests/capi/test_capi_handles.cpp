// The C API from the outside: every function with NULL, freed and made-up handles and with bad
// arguments fails with the documented status and a message instead of crashing; corrupt files
// fail with a message; model info, tokenize/detokenize and chat templates work as documented.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>

#include "tests/capi/capi_test_util.h"

namespace {

using namespace sbits::capi_test;

// Calls every function that takes a model handle with `m`, expecting SBITS_ERR_INVALID_HANDLE.
void check_model_functions_reject(sbits_model* m) {
  sbits_model_info info{};
  info.struct_size = sizeof info;
  int32_t tokens[4] = {1, 2, 3, 4};
  char text[16];
  const sbits_chat_message msg = {"user", "hi"};
  sbits_session* s = reinterpret_cast<sbits_session*>(&info);
  CHECK_FAILS_WITH(sbits_model_get_info(m, &info), SBITS_ERR_INVALID_HANDLE, "sbits_model_get_info");
  CHECK_FAILS_WITH(sbits_tokenize(m, "hi", 2, 0, tokens, 4), SBITS_ERR_INVALID_HANDLE, "sbits_tokenize");
  CHECK_FAILS_WITH(sbits_detokenize(m, tokens, 4, text, 16), SBITS_ERR_INVALID_HANDLE, "sbits_detokenize");
  CHECK_FAILS_WITH(sbits_apply_chat_template(m, nullptr, &msg, 1, 1, text, 16), SBITS_ERR_INVALID_HANDLE,
                   "sbits_apply_chat_template");
  CHECK_FAILS_WITH(sbits_session_create(m, nullptr, &s), SBITS_ERR_INVALID_HANDLE, "sbits_session_create");
  CHECK(s == nullptr);  // out-parameters are cleared on failure
  if (m) CHECK_FAILS_WITH(sbits_model_free(m), SBITS_ERR_INVALID_HANDLE, "sbits_model_free");
}

// The same for every function that takes a session handle.
void check_session_functions_reject(sbits_session* s) {
  int32_t tokens[1] = {1};
  CHECK_FAILS_WITH(sbits_session_reset(s), SBITS_ERR_INVALID_HANDLE, "sbits_session_reset");
  CHECK_FAILS_WITH(sbits_session_n_past(s), SBITS_ERR_INVALID_HANDLE, "sbits_session_n_past");
  CHECK_FAILS_WITH(sbits_session_cancel(s), SBITS_ERR_INVALID_HANDLE, "sbits_session_cancel");
  CHECK_FAILS_WITH(sbits_session_generate(s, tokens, 1, nullptr, nullptr, nullptr, nullptr, nullptr),
                   SBITS_ERR_INVALID_HANDLE, "sbits_session_generate");
  if (s) CHECK_FAILS_WITH(sbits_session_free(s), SBITS_ERR_INVALID_HANDLE, "sbits_session_free");
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = sbits::test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// Loads `path`, expecting `status` and a message containing `needle`.
void check_load_fails(const std::string& path, sbits_status status, const std::string& needle) {
  sbits_model* m = reinterpret_cast<sbits_model*>(&m);  // must be overwritten with NULL
  CHECK_FAILS_WITH(sbits_model_load(path.c_str(), nullptr, &m), status, "sbits_model_load");
  CHECK(m == nullptr);
  CHECK_MESSAGE(last_error().find(needle) != std::string::npos, "last error: " << last_error());
}

}  // namespace

TEST_CASE("version, status names and the last error never fail") {
  CHECK(sbits_version() == SBITS_VERSION_MAJOR * 10000 + SBITS_VERSION_MINOR * 100 + SBITS_VERSION_PATCH);
  CHECK(std::string(sbits_version_string()) == std::to_string(SBITS_VERSION_MAJOR) + "." +
                                                    std::to_string(SBITS_VERSION_MINOR) + "." +
                                                    std::to_string(SBITS_VERSION_PATCH));
  CHECK(std::string(sbits_status_name(SBITS_ERR_FORMAT)) == "SBITS_ERR_FORMAT");
  CHECK(std::string(sbits_status_name(12345)) == "unknown status");
  CHECK(sbits_last_error() != nullptr);
}

TEST_CASE("NULL handles: every function fails with SBITS_ERR_INVALID_HANDLE; free(NULL) is a no-op") {
  check_model_functions_reject(nullptr);
  check_session_functions_reject(nullptr);
  CHECK(sbits_model_free(nullptr) == SBITS_OK);
  CHECK(sbits_session_free(nullptr) == SBITS_OK);
}

TEST_CASE("made-up, freed and swapped handles are recognized without being dereferenced") {
  // Pointers that were never handles: into the stack, and a small integer.
  alignas(16) unsigned char junk[256] = {};
  check_model_functions_reject(reinterpret_cast<sbits_model*>(junk));
  check_model_functions_reject(reinterpret_cast<sbits_model*>(uintptr_t{16}));
  check_session_functions_reject(reinterpret_cast<sbits_session*>(junk));
  check_session_functions_reject(reinterpret_cast<sbits_session*>(uintptr_t{16}));

  // Freed handles (ASan would report any read of their memory).
  sbits_model* m = nullptr;
  sbits_session* s = nullptr;
  REQUIRE(sbits_model_load(model_path().c_str(), nullptr, &m) == SBITS_OK);
  REQUIRE(sbits_session_create(m, nullptr, &s) == SBITS_OK);
  // A session passed as a model and the other way round.
  check_model_functions_reject(reinterpret_cast<sbits_model*>(s));
  check_session_functions_reject(reinterpret_cast<sbits_session*>(m));
  REQUIRE(sbits_session_free(s) == SBITS_OK);
  REQUIRE(sbits_model_free(m) == SBITS_OK);
  check_model_functions_reject(m);
  check_session_functions_reject(s);
}

TEST_CASE("bad arguments with a valid model fail with SBITS_ERR_INVALID_ARGUMENT") {
  Model m;
  int32_t tokens[8];
  char text[8];
  sbits_model_info info{};
  CHECK_FAILS_WITH(sbits_model_get_info(m, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_model_get_info");
  CHECK_FAILS_WITH(sbits_model_get_info(m, &info), SBITS_ERR_INVALID_ARGUMENT, "sbits_model_get_info");
  CHECK(last_error().find("struct_size") != std::string::npos);

  CHECK_FAILS_WITH(sbits_tokenize(m, nullptr, 3, 0, tokens, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_tokenize");
  CHECK_FAILS_WITH(sbits_tokenize(m, "abc", 3, 0, nullptr, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_tokenize");
  CHECK_FAILS_WITH(sbits_tokenize(m, "abc", 3, 0, tokens, -1), SBITS_ERR_INVALID_ARGUMENT, "sbits_tokenize");
  CHECK_FAILS_WITH(sbits_tokenize(m, "abc", 3, 0x80, tokens, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_tokenize");
  CHECK(sbits_tokenize(m, nullptr, 0, 0, nullptr, 0) == 0);  // empty text, no BOS: no tokens

  const int32_t bad[2] = {1, 100000};
  CHECK_FAILS_WITH(sbits_detokenize(m, bad, 2, text, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_detokenize");
  CHECK(last_error().find("tokens[1] = 100000") != std::string::npos);
  const int32_t negative[1] = {-1};
  CHECK_FAILS_WITH(sbits_detokenize(m, negative, 1, text, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_detokenize");
  CHECK_FAILS_WITH(sbits_detokenize(m, nullptr, 2, text, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_detokenize");
  CHECK_FAILS_WITH(sbits_detokenize(m, bad, -1, text, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_detokenize");
  CHECK_FAILS_WITH(sbits_detokenize(m, bad, 1, nullptr, 8), SBITS_ERR_INVALID_ARGUMENT, "sbits_detokenize");

  const sbits_chat_message no_role = {nullptr, "hi"}, bad_role = {"robot", "hi"};
  CHECK_FAILS_WITH(sbits_apply_chat_template(m, nullptr, nullptr, 2, 1, text, 8), SBITS_ERR_INVALID_ARGUMENT,
                   "sbits_apply_chat_template");
  CHECK_FAILS_WITH(sbits_apply_chat_template(m, nullptr, &no_role, 1, 1, text, 8), SBITS_ERR_INVALID_ARGUMENT,
                   "sbits_apply_chat_template");
  CHECK_FAILS_WITH(sbits_apply_chat_template(m, nullptr, &bad_role, 1, 1, text, 8), SBITS_ERR_INVALID_ARGUMENT,
                   "sbits_apply_chat_template");
  CHECK_FAILS_WITH(sbits_apply_chat_template(m, "no-such-template", &bad_role, 1, 1, text, 8),
                   SBITS_ERR_INVALID_ARGUMENT, "sbits_apply_chat_template");

  sbits_session* s = nullptr;
  CHECK_FAILS_WITH(sbits_session_create(m, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_create");
  sbits_session_params sp = sbits_session_default_params();
  sp.n_ctx = 1 << 20;
  CHECK_FAILS_WITH(sbits_session_create(m, &sp, &s), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_create");
  sp = sbits_session_default_params();
  sp.kv_type = 7;
  CHECK_FAILS_WITH(sbits_session_create(m, &sp, &s), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_create");
  sp = sbits_session_default_params();
  sp.n_batch = -1;  // 0 is the backend's choice; negative or above 4096 is refused
  CHECK_FAILS_WITH(sbits_session_create(m, &sp, &s), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_create");
  sp.n_batch = 4097;
  CHECK_FAILS_WITH(sbits_session_create(m, &sp, &s), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_create");
  sp.struct_size = 0;  // a struct that was never initialized
  CHECK_FAILS_WITH(sbits_session_create(m, &sp, &s), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_create");
  CHECK(s == nullptr);
}

TEST_CASE("bad generation arguments fail without touching the session") {
  Model m;
  Session s(m);
  const int32_t ok[1] = {1}, bad[2] = {1, 512};
  sbits_sampling_params sp = sbits_sampling_default_params();
  sbits_generate_params gp = sbits_generate_default_params();
  sbits_generate_result r{};
  auto gen = [&](const int32_t* p, int32_t n, const sbits_sampling_params* sp_, const sbits_generate_params* gp_,
                 sbits_generate_result* r_) {
    return sbits_session_generate(s, p, n, sp_, gp_, nullptr, nullptr, r_);
  };
  CHECK_FAILS_WITH(gen(nullptr, 1, nullptr, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  CHECK_FAILS_WITH(gen(ok, 0, nullptr, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  CHECK_FAILS_WITH(gen(ok, -3, nullptr, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  CHECK_FAILS_WITH(gen(bad, 2, nullptr, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  CHECK(last_error().find("prompt[1] = 512") != std::string::npos);
  sp.top_p = -1;
  CHECK_FAILS_WITH(gen(ok, 1, &sp, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  sp = sbits_sampling_default_params();
  sp.temperature = std::nanf("");
  CHECK_FAILS_WITH(gen(ok, 1, &sp, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  sp.struct_size = 0;
  CHECK_FAILS_WITH(gen(ok, 1, &sp, nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  gp.n_stop_strings = 2;
  CHECK_FAILS_WITH(gen(ok, 1, nullptr, &gp, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  const char* stops[2] = {"x", ""};
  gp.stop_strings = stops;
  CHECK_FAILS_WITH(gen(ok, 1, nullptr, &gp, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  gp = sbits_generate_default_params();
  gp.chat_stops = 1;
  gp.chat_template = "no-such-template";
  CHECK_FAILS_WITH(gen(ok, 1, nullptr, &gp, nullptr), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");
  CHECK_FAILS_WITH(gen(ok, 1, nullptr, nullptr, &r), SBITS_ERR_INVALID_ARGUMENT, "sbits_session_generate");

  // Longer than the context: SBITS_ERR_CONTEXT_FULL, with the numbers.
  std::vector<int32_t> long_prompt(600, 1);
  CHECK_FAILS_WITH(gen(long_prompt.data(), 600, nullptr, nullptr, nullptr), SBITS_ERR_CONTEXT_FULL,
                   "sbits_session_generate");
  CHECK(last_error().find("600 tokens") != std::string::npos);
  CHECK(sbits_session_n_past(s) == 0);  // nothing was computed by any of the failed calls
}

TEST_CASE("files that are missing, corrupt or not models: an error with a message, never a crash") {
  const std::string good = read_file(model_path());
  REQUIRE(good.size() > 4096);
  check_load_fails(sbits::test::temp_dir() + "/missing.sbits", SBITS_ERR_IO, "missing.sbits");
  check_load_fails(sbits::test::temp_dir(), SBITS_ERR_IO, "not a regular file");
  check_load_fails(write_temp("empty.sbits", ""), SBITS_ERR_FORMAT, "empty.sbits");
  check_load_fails(write_temp("text.sbits", "this is not a model, just some text\n"), SBITS_ERR_FORMAT, "text.sbits");
  check_load_fails(write_temp("truncated.sbits", good.substr(0, good.size() / 2)), SBITS_ERR_FORMAT,
                   "truncated.sbits");
  for (size_t offset : {size_t{0}, size_t{9}, size_t{64}, good.size() - 8}) {
    std::string bad = good;
    bad[offset] = static_cast<char>(bad[offset] ^ 0x5a);
    CAPTURE(offset);
    check_load_fails(write_temp("flipped.sbits", bad), SBITS_ERR_FORMAT, "flipped.sbits");
  }
  // A flipped byte inside tensor data passes the header checks; verify_tensors catches it.
  std::string bad = good;
  bad[good.size() / 2] = static_cast<char>(bad[good.size() / 2] ^ 0x5a);
  const std::string path = write_temp("tensor.sbits", bad);
  sbits_model_params p = sbits_model_default_params();
  p.verify_tensors = 1;
  sbits_model* m = nullptr;
  CHECK_FAILS_WITH(sbits_model_load(path.c_str(), &p, &m), SBITS_ERR_FORMAT, "sbits_model_load");
  CHECK(m == nullptr);

  CHECK_FAILS_WITH(sbits_model_load(nullptr, nullptr, &m), SBITS_ERR_INVALID_ARGUMENT, "sbits_model_load");
  CHECK_FAILS_WITH(sbits_model_load(model_path().c_str(), nullptr, nullptr), SBITS_ERR_INVALID_ARGUMENT,
                   "sbits_model_load");
}

TEST_CASE("backends: cpu and auto load; unknown or unbuilt ones fail with SBITS_ERR_BACKEND naming it") {
  for (const char* name : {"cpu", "auto"}) {
    sbits_model_params p = sbits_model_default_params();
    p.backend = name;
    p.n_threads = 2;
    Model m(model_path(), &p);
    sbits_model_info info{};
    info.struct_size = sizeof info;
    REQUIRE(sbits_model_get_info(m, &info) == SBITS_OK);
    // "auto" is "cuda" in a CUDA build on a machine with a GPU.
    if (std::string(name) == "cpu") CHECK(std::string(info.backend) == "cpu");
  }
  {
    sbits_model_params p = sbits_model_default_params();
    p.backend = "tpu";
    sbits_model* m = nullptr;
    CHECK_FAILS_WITH(sbits_model_load(model_path().c_str(), &p, &m), SBITS_ERR_BACKEND, "sbits_model_load");
    CHECK(last_error().find("tpu") != std::string::npos);
  }
  // "cuda" and "vulkan" load only in a build with them and a device (llvmpipe counts for
  // Vulkan); anywhere else they fail the same way, naming the backend.
  sbits_model_params p = sbits_model_default_params();
  for (const char* name : {"cuda", "vulkan"}) {
    p.backend = name;
    sbits_model* m = nullptr;
    const sbits_status st = sbits_model_load(model_path().c_str(), &p, &m);
    CHECK_MESSAGE((st == SBITS_OK || st == SBITS_ERR_BACKEND), sbits_last_error());
    if (st == SBITS_ERR_BACKEND) CHECK(last_error().find(name) != std::string::npos);
    sbits_model_free(m);
  }

  p = sbits_model_default_params();
  p.n_threads = -1;
  sbits_model* m = nullptr;
  CHECK_FAILS_WITH(sbits_model_load(model_path().c_str(), &p, &m), SBITS_ERR_INVALID_ARGUMENT, "sbits_model_load");
}

TEST_CASE("load progress: 0 first, 1 last, never decreasing, once per tensor; non-zero cancels") {
  struct Log {
    std::vector<float> seen;
    float cancel_at = 2.0f;
  };
  auto cb = [](float progress, void* user) -> int {
    auto* log = static_cast<Log*>(user);
    log->seen.push_back(progress);
    return progress >= log->cancel_at ? 1 : 0;
  };
  Log log;
  sbits_model_params p = sbits_model_default_params();
  p.progress_callback = cb;
  p.progress_user_data = &log;
  { Model m(model_path(), &p); }
  REQUIRE(log.seen.size() >= 47 + 2);  // stories260K has 47 tensors, plus the calls at 0 and 1
  CHECK(log.seen.front() == 0.0f);
  CHECK(log.seen.back() == 1.0f);
  CHECK(std::is_sorted(log.seen.begin(), log.seen.end()));

  Log cancel;
  cancel.cancel_at = 0.5f;
  p.progress_user_data = &cancel;
  sbits_model* m = nullptr;
  CHECK_FAILS_WITH(sbits_model_load(model_path().c_str(), &p, &m), SBITS_ERR_CANCELLED, "sbits_model_load");
  CHECK(m == nullptr);
  CHECK(cancel.seen.back() >= 0.5f);
  CHECK(cancel.seen.back() < 1.0f);
}

TEST_CASE("model info of stories260K") {
  Model m;
  sbits_model_info info{};
  info.struct_size = sizeof info;
  REQUIRE(sbits_model_get_info(m, &info) == SBITS_OK);
  CHECK(std::string(info.architecture) == "llama");
  CHECK(info.vocab_size == 512);
  CHECK(info.context_length == 512);
  CHECK(info.n_layers == 5);
  CHECK(info.embedding_dim == 64);
  CHECK(info.n_params == 260032);
  CHECK(info.bits_per_weight == doctest::Approx(32.0));  // f32 weights
  CHECK(info.bos_token == 1);
  CHECK(info.eos_token == 2);
  REQUIRE(info.chat_template != nullptr);  // sbits-convert stores "plain" for llama2.c models
  CHECK(std::string(info.device).size() > 0);

  // An older caller's shorter struct: only the fields it has are written.
  struct OldInfo {
    size_t struct_size;
    const char* architecture;
    const char* canary;
  } old{offsetof(sbits_model_info, backend), nullptr, "untouched"};
  REQUIRE(sbits_model_get_info(m, reinterpret_cast<sbits_model_info*>(&old)) == SBITS_OK);
  CHECK(std::string(old.architecture) == "llama");
  CHECK(std::string(old.canary) == "untouched");
}

TEST_CASE("tokenize and detokenize: the required-size convention and a round trip") {
  Model m;
  const std::string text = "Once upon a time, there was a dog.";
  const int32_t n = sbits_tokenize(m, text.data(), text.size(), SBITS_TOKENIZE_ADD_BOS, nullptr, 0);
  REQUIRE(n > 5);
  std::vector<int32_t> ids(static_cast<size_t>(n), -7);
  CHECK(sbits_tokenize(m, text.data(), text.size(), SBITS_TOKENIZE_ADD_BOS, ids.data(), n - 1) == n);
  CHECK(ids[0] == -7);  // too small: nothing written
  CHECK(sbits_tokenize(m, text.data(), text.size(), SBITS_TOKENIZE_ADD_BOS, ids.data(), n) == n);
  CHECK(ids[0] == 1);
  CHECK(tokenize(m, text, 0).size() == ids.size() - 1);

  const int32_t len = sbits_detokenize(m, ids.data(), n, nullptr, 0);
  CHECK(len == static_cast<int32_t>(text.size()));
  std::string out(static_cast<size_t>(len) + 1, '#');
  CHECK(sbits_detokenize(m, ids.data(), n, out.data(), len) == len);  // no room for the NUL
  CHECK(out[0] == '#');
  CHECK(sbits_detokenize(m, ids.data(), n, out.data(), len + 1) == len);
  CHECK(out.c_str() == text);

  // "<s>" is text unless special tokens are parsed.
  CHECK(tokenize(m, "<s>", SBITS_TOKENIZE_PARSE_SPECIAL) == std::vector<int32_t>{1});
  CHECK(tokenize(m, "<s>", 0).size() > 1);
}

TEST_CASE("chat templates: the model's (plain when none), a named one, a custom one") {
  Model m;
  const sbits_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "Hello"}};
  auto render = [&](const char* tmpl) {
    const int32_t n = sbits_apply_chat_template(m, tmpl, msgs, 2, 1, nullptr, 0);
    REQUIRE_MESSAGE(n >= 0, sbits_last_error());
    std::string s(static_cast<size_t>(n) + 1, '\0');
    REQUIRE(sbits_apply_chat_template(m, tmpl, msgs, 2, 1, s.data(), n + 1) == n);
    s.resize(static_cast<size_t>(n));
    return s;
  };
  sbits_model_info info{};
  info.struct_size = sizeof info;
  REQUIRE(sbits_model_get_info(m, &info) == SBITS_OK);
  CHECK(render(nullptr) == render(*info.chat_template ? info.chat_template : "plain"));
  CHECK(render(nullptr) == "<s>System: Be brief.\nUser: Hello\nAssistant:");
  CHECK(render("chatml").find("<|im_start|>user\nHello<|im_end|>") != std::string::npos);
  const char* custom = "version = 1\nname = mine\nuser_prefix = \"Q: \"\nuser_suffix = \"\\n\"\n"
                       "assistant_prefix = \"A: \"\ngeneration_prompt = \"A:\"\n";
  const sbits_chat_message one = {"user", "Hi"};
  char buf[64];
  const int32_t n = sbits_apply_chat_template(m, custom, &one, 1, 1, buf, sizeof buf);
  REQUIRE_MESSAGE(n >= 0, sbits_last_error());
  CHECK(std::string(buf) == "Q: Hi\nA:");
  CHECK_FAILS_WITH(sbits_apply_chat_template(m, nullptr, msgs, 0, 1, buf, sizeof buf), SBITS_ERR_INVALID_ARGUMENT,
                   "sbits_apply_chat_template");
}

TEST_CASE("freeing the model while a session uses it: the session keeps it alive") {
  sbits_model* m = nullptr;
  REQUIRE(sbits_model_load(model_path().c_str(), nullptr, &m) == SBITS_OK);
  Session s(m);
  const std::vector<int32_t> ids = tokenize(m, "");
  REQUIRE(sbits_model_free(m) == SBITS_OK);
  CHECK_FAILS_WITH(sbits_tokenize(m, "a", 1, 0, nullptr, 0), SBITS_ERR_INVALID_HANDLE, "sbits_tokenize");
  Collected c;
  sbits_sampling_params sp = sbits_sampling_default_params();
  sp.temperature = 0;
  sbits_generate_params gp = sbits_generate_default_params();
  gp.max_tokens = 200;
  REQUIRE(sbits_session_generate(s, ids.data(), 1, &sp, &gp, collect_token, &c, nullptr) == SBITS_OK);
  CHECK(c.text + "\n" == golden_text());
}
