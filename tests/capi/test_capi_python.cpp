// examples/stream.py, the ctypes example, run with python3 against this build's libsbits.so:
// it must stream llama2.c's golden text for stories260K.
//
// Under the sanitizer build libsbits.so needs the ASan runtime loaded first, which an ordinary
// python3 does not do; the test preloads it. If the runtime still refuses to start that way,
// the test exits with 77 (ctest: skipped), saying why: the same script runs in the Release build.
#include <cstdio>
#include <cstdlib>

#include "tests/capi/capi_test_util.h"

namespace {

using namespace sbits::capi_test;

std::string quote(const std::string& s) { return "'" + s + "'"; }

bool asan_refused_to_start(const std::string& err) {
  for (const char* sign : {"ASan runtime does not come first", "Shadow memory range interleaves",
                           "AddressSanitizer: failed to intercept", "incompatible ASan runtimes"})
    if (err.find(sign) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("examples/stream.py streams the golden text through ctypes") {
  std::string env;
  if (SBITS_CAPI_SANITIZE) {
    // Python leaks by design at exit; ASan's leak report would fail an otherwise clean run.
    env = std::string("LD_PRELOAD=") + quote(SBITS_CAPI_ASAN_RUNTIME) + " ASAN_OPTIONS=detect_leaks=0 ";
  }
  const std::string cmd = env + "python3 " + quote(std::string(SBITS_CAPI_SOURCE_DIR) + "/examples/stream.py") + " " +
                          quote(model_path()) + " -n 200 --temp 0 --lib " + quote(SBITS_CAPI_LIBRARY);
  std::string out, err;
  const int rc = sbits::test::run_command(cmd, &out, &err);
  if (rc != 0 && SBITS_CAPI_SANITIZE && asan_refused_to_start(err)) {
    std::fprintf(stderr, "skipped: python3 cannot load the ASan-instrumented libsbits.so here:\n%s\n", err.c_str());
    std::fflush(stderr);
    std::_Exit(77);
  }
  REQUIRE_MESSAGE(rc == 0, err);
  CHECK(out == golden_text());
  CHECK(err.find("stop: length") != std::string::npos);
}
