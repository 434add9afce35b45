#include "quantizer/stats_cache.h"

#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantizer/tile_quant.h"

namespace sbits::quantizer {
namespace {

constexpr char kMagic[8] = {'S', 'B', 'Q', 'S', 'T', 'A', 'T', '1'};

class Writer {
 public:
  template <class T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    out_.append(p, sizeof(T));
  }
  template <class T>
  void put_array(const std::vector<T>& v) {
    if (!v.empty()) out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_bytes(const char* p, size_t n) { out_.append(p, n); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

// Bounds-checked reads; any shortfall makes the whole file invalid.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  template <class T>
  bool get(T& v) {
    if (s_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, s_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  template <class T>
  bool get_array(std::vector<T>& v, uint64_t n) {
    if (n > (s_.size() - pos_) / sizeof(T)) return false;
    v.resize(size_t(n));
    if (n == 0) return true;  // an empty vector's data() may be null: no memcpy
    std::memcpy(v.data(), s_.data() + pos_, size_t(n) * sizeof(T));
    pos_ += size_t(n) * sizeof(T);
    return true;
  }
  bool get_string(std::string& v, uint32_t n) {
    if (s_.size() - pos_ < n) return false;
    v.assign(s_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

bool read_body(Reader& rd, CachedStats& c) {
  uint32_t layers = 0;
  if (!rd.get(layers) || layers > 100000) return false;
  c.stats.layers.resize(layers);
  for (auto& layer : c.stats.layers) {
    for (InputMoments& m : layer) {
      uint32_t width = 0;
      if (!rd.get(width) || !rd.get(m.rows) || !rd.get_array(m.sq, width)) return false;
      m.width = int(width);
      m.block = 0;
    }
  }
  uint64_t vocab = 0, tensors = 0;
  if (!rd.get(vocab) || !rd.get_array(c.stats.token_counts, vocab) || !rd.get(c.stats.tokens) ||
      !rd.get(c.stats.loss))
    return false;
  uint32_t n = 0;
  if (!rd.get(n)) return false;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t len = 0;
    std::string name;
    uint64_t rows = 0, cols = 0;
    TensorSensitivity s;
    if (!rd.get(len) || !rd.get_string(name, len) || !rd.get(rows) || !rd.get_array(s.r, rows) || !rd.get(cols) ||
        !rd.get_array(s.c, cols))
      return false;
    c.sens[name] = std::move(s);
    ++tensors;
  }
  return tensors == n;
}

}  // namespace

uint64_t stats_cache_key(const SbitsFile& model, uint64_t calib_hash, size_t calib_tokens, int seq_len,
                         const std::string& sensitivity) {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  for (const TensorInfo& t : model.tensors()) {
    XXH64_update(st, t.name.data(), t.name.size());
    XXH64_update(st, &t.xxh64, sizeof t.xxh64);
  }
  const uint64_t tokens = calib_tokens, seq = uint64_t(seq_len);
  XXH64_update(st, &calib_hash, sizeof calib_hash);
  XXH64_update(st, &tokens, sizeof tokens);
  XXH64_update(st, &seq, sizeof seq);
  XXH64_update(st, sensitivity.data(), sensitivity.size());
  const uint64_t key = XXH64_digest(st);
  XXH64_freeState(st);
  return key;
}

std::string stats_cache_path(const std::string& dir, uint64_t key) {
  char name[40];
  std::snprintf(name, sizeof name, "stats-%016llx.bin", static_cast<unsigned long long>(key));
  return (std::filesystem::path(dir) / name).string();
}

std::optional<CachedStats> load_stats_cache(const std::string& path, uint64_t key) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  if (s.size() < sizeof kMagic + 16 || std::memcmp(s.data(), kMagic, sizeof kMagic) != 0) return std::nullopt;
  uint64_t sum = 0;
  std::memcpy(&sum, s.data() + s.size() - 8, 8);
  if (XXH64(s.data(), s.size() - 8, 0) != sum) return std::nullopt;
  Reader rd(std::string_view(s).substr(sizeof kMagic, s.size() - sizeof kMagic - 8));
  uint64_t file_key = 0;
  CachedStats c;
  if (!rd.get(file_key) || file_key != key || !read_body(rd, c)) return std::nullopt;
  return c;
}

void save_stats_cache(const std::string& path, uint64_t key, const CachedStats& c) {
  Writer w;
  w.put_bytes(kMagic, sizeof kMagic);
  w.put(key);
  w.put(uint32_t(c.stats.layers.size()));
  for (const auto& layer : c.stats.layers) {
    for (const InputMoments& m : layer) {
      w.put(uint32_t(m.sq.size()));
      w.put(m.rows);
      w.put_array(m.sq);
    }
  }
  w.put(uint64_t(c.stats.token_counts.size()));
  w.put_array(c.stats.token_counts);
  w.put(c.stats.tokens);
  w.put(c.stats.loss);
  w.put(uint32_t(c.sens.size()));
  for (const auto& [name, s] : c.sens) {
    w.put(uint32_t(name.size()));
    w.put_bytes(name.data(), name.size());
    w.put(uint64_t(s.r.size()));
    w.put_array(s.r);
    w.put(uint64_t(s.c.size()));
    w.put_array(s.c);
  }
  w.put(uint64_t(XXH64(w.bytes().data(), w.bytes().size(), 0)));
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(w.bytes().data(), std::streamsize(w.bytes().size()));
    if (!f.flush()) throw QuantizerError("--cache: cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw QuantizerError("--cache: cannot rename " + tmp + " to " + path);
  }
}

}  // namespace sbits::quantizer
