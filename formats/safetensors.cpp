#include "formats/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "formats/bytes.h"
#include "formats/sbits_layout.h"

namespace sbits::detail {
namespace {

using json = nlohmann::json;

// Sizes of every dtype the safetensors spec defines, so that bounds can be checked even for
// tensors the importer will not use.
struct DtypeInfo {
  const char* name;
  uint64_t bytes;
  std::optional<Layout> layout;
};
constexpr DtypeInfo kDtypes[] = {
    {"F32", 4, Layout::f32}, {"F16", 2, Layout::f16}, {"BF16", 2, Layout::bf16}, {"F64", 8, {}},
    {"I64", 8, {}},          {"I32", 4, {}},          {"I16", 2, {}},            {"I8", 1, {}},
    {"U64", 8, {}},          {"U32", 4, {}},          {"U16", 2, {}},            {"U8", 1, {}},
    {"BOOL", 1, {}},         {"F8_E4M3", 1, {}},      {"F8_E5M2", 1, {}},
};
constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the safetensors spec's own limit

uint64_t json_u64(const json& j, const std::string& what) {
  if (!j.is_number_unsigned()) throw FormatError(what + ": expected a non-negative integer, found " + j.dump());
  return j.get<uint64_t>();
}

SafetensorsTensor parse_entry(const std::string& name, const json& e, std::span<const uint8_t> data,
                              const std::string& p) {
  const std::string w = p + ": tensor " + name;
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
    throw FormatError(w + ": expected an object with dtype, shape and data_offsets");
  }
  SafetensorsTensor t;
  t.name = name;
  if (!e["dtype"].is_string()) throw FormatError(w + ": dtype: expected a string");
  t.dtype = e["dtype"].get<std::string>();
  const DtypeInfo* info = nullptr;
  for (const auto& d : kDtypes) info = (t.dtype == d.name) ? &d : info;
  if (!info) throw FormatError(w + ": unknown dtype \"" + t.dtype + "\"");
  t.layout = info->layout;
  const json& shape = e["shape"];
  if (!shape.is_array() || shape.size() > 8) throw FormatError(w + ": shape: expected an array of at most 8 sizes");
  uint64_t numel = 1;
  for (const json& d : shape) {
    t.shape.push_back(json_u64(d, w + ": shape"));
    numel = checked_mul(numel, t.shape.back(), w);
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2) throw FormatError(w + ": data_offsets: expected [begin, end]");
  uint64_t b = json_u64(off[0], w + ": data_offsets"), end = json_u64(off[1], w + ": data_offsets");
  if (b > end || end > data.size()) {
    throw FormatError(w + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(end) +
                      "): expected inside the " + std::to_string(data.size()) + " data bytes");
  }
  uint64_t want = checked_mul(numel, info->bytes, w);
  if (end - b != want) {
    throw FormatError(w + ": expected " + std::to_string(want) + " bytes for " + t.dtype + " " +
                      shape_string(t.shape) + ", found " + std::to_string(end - b));
  }
  t.bytes = data.subspan(b, end - b);
  return t;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  auto all = map_.bytes();
  if (all.size() < 8) throw FormatError(path + ": file is " + std::to_string(all.size()) + " bytes, too small for a safetensors header");
  uint64_t n;
  std::memcpy(&n, all.data(), 8);
  if (n > kMaxHeaderBytes || n > all.size() - 8) {
    throw FormatError(path + ": header length " + std::to_string(n) + ": expected at most " +
                      std::to_string(std::min<uint64_t>(kMaxHeaderBytes, all.size() - 8)) + " (file is " +
                      std::to_string(all.size()) + " bytes)");
  }
  auto text = all.subspan(8, n);
  json header = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) throw FormatError(path + ": header is not a JSON object");
  auto data = all.subspan(8 + n);
  std::vector<std::pair<const uint8_t*, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    SafetensorsTensor t = parse_entry(name, entry, data, path);
    if (!t.bytes.empty()) ranges.push_back({t.bytes.data(), t.bytes.size()});
    tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i - 1].first + ranges[i - 1].second > ranges[i].first) {
      throw FormatError(path + ": tensors overlap in the data section at byte " +
                        std::to_string(ranges[i].first - data.data()));
    }
  }
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace sbits::detail
