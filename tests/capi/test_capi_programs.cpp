// libsbits as a user gets it: C programs linked against the shared and the static library, the
// chat example, the exported symbols, and `cmake --install` + pkg-config.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>

#include "tests/capi/capi_test_util.h"

namespace {

using namespace sbits::capi_test;
using sbits::test::run_command;

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Compiler flags a program needs to link against this build's objects (sanitized or not).
std::string sanitize_flags() { return SBITS_CAPI_SANITIZE ? " -fsanitize=address,undefined" : ""; }

std::string run_ok(const std::string& cmd) {
  std::string out, err;
  const int rc = run_command(cmd, &out, &err);
  REQUIRE_MESSAGE(rc == 0, cmd << "\nexit " << rc << "\n" << err);
  return out;
}

// The names declared "SBITS_API <type> name(" in the header (the macro's own definition aside).
std::set<std::string> header_functions(const std::string& header) {
  const std::string text = read_file(header);
  std::set<std::string> names;
  for (size_t at = text.find("SBITS_API "); at != std::string::npos; at = text.find("SBITS_API ", at + 1)) {
    const size_t paren = text.find('(', at);
    if (paren == std::string::npos || text.find(';', at) < paren) continue;
    size_t begin = paren;
    while (begin > at && (std::isalnum(static_cast<unsigned char>(text[begin - 1])) || text[begin - 1] == '_'))
      --begin;
    if (text.compare(begin, 6, "sbits_") == 0) names.insert(text.substr(begin, paren - begin));
  }
  return names;
}

}  // namespace

TEST_CASE("the C99 program prints the golden text, linked to libsbits.so and to libsbits.a") {
  const std::string args = std::string(" ").append(quote(model_path())).append(" 200");
  CHECK(run_ok(SBITS_CAPI_C_GOLDEN + args) == golden_text());
  CHECK(run_ok(SBITS_CAPI_C_GOLDEN_STATIC + args) == golden_text());
  // The static build really is static: it does not load libsbits.so.
  CHECK(run_ok("readelf -d " + quote(SBITS_CAPI_C_GOLDEN_STATIC)).find("libsbits") == std::string::npos);
  CHECK(run_ok("readelf -d " + quote(SBITS_CAPI_C_GOLDEN)).find("libsbits.so.0") != std::string::npos);
}

TEST_CASE("examples/chat.c answers two turns and exits cleanly at end of input") {
  std::string out, err;
  const std::string cmd = "printf 'Hello\\nTell me a story\\n' | " + quote(SBITS_CAPI_CHAT_EXAMPLE) + " " +
                          quote(model_path()) + " 'You are a storyteller.'";
  REQUIRE_MESSAGE(run_command(cmd, &out, &err) == 0, err);
  CHECK(out.size() > 20);
  CHECK(std::count(out.begin(), out.end(), '\n') >= 2);  // one line ends each reply
  CHECK(err.find("chat:") == std::string::npos);        // no error reported
}

TEST_CASE("libsbits.so exports the header's functions and nothing else") {
  const std::string out = run_ok("nm -D --defined-only " + quote(SBITS_CAPI_LIBRARY));
  std::set<std::string> exported;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::string name = line.substr(line.rfind(' ') + 1);
    name = name.substr(0, name.find('@'));
    if (name == "SBITS_0") continue;  // the version script's symbol version node
    CHECK_MESSAGE(name.rfind("sbits_", 0) == 0, "exported symbol outside the API: " << line);
    exported.insert(name);
  }
  const std::set<std::string> declared = header_functions(std::string(SBITS_CAPI_SOURCE_DIR) + "/engine/include/sbits.h");
  CHECK(declared.size() >= 20);
  CHECK(exported == declared);
  // Versioned, with the SONAME applications record.
  CHECK(out.find("sbits_model_load@@SBITS_0") != std::string::npos);
  CHECK(run_ok("readelf -d " + quote(SBITS_CAPI_LIBRARY)).find("Library soname: [libsbits.so.0]") != std::string::npos);
}

TEST_CASE("cmake --install places header, libraries and sbits.pc; pkg-config builds a working program") {
  const std::string prefix = sbits::test::temp_dir() + "/prefix";
  run_ok(std::string(SBITS_CAPI_CMAKE) + " --install " + quote(SBITS_CAPI_BUILD_DIR) + " --prefix " + quote(prefix));
  const std::string pcdir = run_ok("dirname \"$(find " + quote(prefix) + " -name sbits.pc)\"");
  REQUIRE(!pcdir.empty());
  const std::string pc = "PKG_CONFIG_PATH=" + quote(pcdir.substr(0, pcdir.size() - 1)) + " pkg-config ";
  const std::string libdir = run_ok(pc + "--variable=libdir sbits");
  const std::string lib = libdir.substr(0, libdir.size() - 1);
  for (const char* f : {"/libsbits.so", "/libsbits.so.0", "/libsbits.a"})
    CHECK_MESSAGE(std::filesystem::exists(lib + f), lib << f);
  CHECK(std::filesystem::exists(prefix + "/include/sbits.h"));
  CHECK(run_ok(pc + "--modversion sbits") == std::string(sbits_version_string()) + "\n");

  // Shared: what the README tells users to type (plus an rpath, as the prefix is not a system one).
  const std::string dir = sbits::test::temp_dir();
  const std::string src = quote(std::string(SBITS_CAPI_SOURCE_DIR) + "/tests/capi/c_golden.c");
  const std::string cc = quote(SBITS_CAPI_CC) + " -std=c99 -Wall -Wextra -Werror -pedantic" + sanitize_flags();
  run_ok(cc + " " + src + " -o " + dir + "/shared $(" + pc + "--cflags --libs sbits) -Wl,-rpath," + quote(lib));
  CHECK(run_ok(dir + "/shared " + quote(model_path()) + " 200") == golden_text());

  // Static: the archive plus the private dependencies pkg-config --static lists.
  run_ok(cc + " " + src + " -o " + dir + "/static $(" + pc + "--static --cflags --libs sbits | sed 's/-lsbits /-l:libsbits.a /')");
  CHECK(run_ok(dir + "/static " + quote(model_path()) + " 200") == golden_text());
}
