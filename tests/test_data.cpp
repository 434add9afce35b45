#include "tests/test_data.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

namespace sbits::test {
namespace fs = std::filesystem;

std::string data_dir() {
  if (const char* env = std::getenv("SBITS_DATA"); env && *env) return env;
  return SBITS_DEFAULT_DATA_DIR;
}

std::string data_path(const std::string& rel) {
  std::string p = data_dir() + "/" + rel;
  if (!fs::exists(p)) FAIL("test data missing: " << p << " (set SBITS_DATA or put ../shared/data beside the repo)");
  return p;
}

std::string tools_dir() {
  if (const char* env = std::getenv("SBITS_TOOLS_DIR"); env && *env) return env;
  return fs::current_path().string();
}

namespace {
struct TempRoot {
  std::string path;
  ~TempRoot() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};
TempRoot g_temp_root;
std::mutex g_temp_mutex;
int g_temp_counter = 0;
}  // namespace

std::string temp_dir() {
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  if (g_temp_root.path.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "sbits-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) FAIL("mkdtemp failed");
    g_temp_root.path = tmpl;
  }
  std::string dir = g_temp_root.path + "/t" + std::to_string(g_temp_counter++);
  fs::create_directories(dir);
  return dir;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_command(const std::string& cmd, std::string* out, std::string* err) {
  std::string dir = temp_dir();
  std::string o = dir + "/stdout", e = dir + "/stderr";
  std::string full = "(" + cmd + ") >" + o + " 2>" + e + " </dev/null";
  int status = std::system(full.c_str());
  if (out) *out = read_text_file(o);
  if (err) *err = read_text_file(e);
  if (status == -1) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace sbits::test
