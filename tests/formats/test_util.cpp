#include "tests/formats/test_util.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "tests/test_data.h"

namespace sbits::test {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE_MESSAGE(out.good(), "cannot write " << path);
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.dim = 8;
  c.ffn_dim = 12;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 4;
  c.vocab_size = 16;
  c.context_length = 32;
  return c;
}

void write_tiny_model(const std::string& path, const ModelConfig& c) {
  SbitsWriter w(path, {});
  c.to_metadata(w.metadata());
  w.metadata().set("general.name", std::string("tiny"));
  w.metadata().set("tokenizer.kind", std::string("llama2c"));
  w.metadata().set("tokenizer.model", std::vector<uint8_t>{1, 2, 3});
  uint32_t seed = 1;
  for (const ExpectedTensor& e : expected_tensors(c)) {
    uint64_t n = 1;
    for (uint64_t d : e.shape) n *= d;
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>((seed = seed * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    w.add_tensor(e.name, static_cast<uint32_t>(Layout::f32), 1, e.shape,
                 {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4});
  }
  w.commit();
}

detail::Header header_of(const std::vector<uint8_t>& file) {
  REQUIRE(file.size() >= sizeof(detail::Header));
  detail::Header h;
  std::memcpy(&h, file.data(), sizeof h);
  return h;
}

void set_header(std::vector<uint8_t>& file, const detail::Header& h) { std::memcpy(file.data(), &h, sizeof h); }

void fix_checksum(std::vector<uint8_t>& file) {
  detail::Header h = header_of(file);
  REQUIRE(h.metadata_offset + h.metadata_size <= file.size());
  REQUIRE(h.directory_offset + h.directory_size <= file.size());
  std::span<const uint8_t> all(file);
  h.checksum = detail::header_checksum(h, all.subspan(h.metadata_offset, h.metadata_size),
                                       all.subspan(h.directory_offset, h.directory_size));
  set_header(file, h);
}

std::vector<EntryPos> directory_entries(const std::vector<uint8_t>& file) {
  detail::Header h = header_of(file);
  size_t p = h.directory_offset;
  uint64_t count = get_at<uint64_t>(file, p);
  p += 8;
  std::vector<EntryPos> out;
  for (uint64_t i = 0; i < count; ++i) {
    EntryPos e;
    uint16_t n = get_at<uint16_t>(file, p);
    e.name.assign(reinterpret_cast<const char*>(file.data() + p + 2), n);
    p += 2 + n;
    e.layout = p;
    e.layout_version = p + 4;
    e.ndim = p + 8;
    uint8_t nd = file[e.ndim];
    e.dims = p + 9;
    p = e.dims + 8 * nd;
    e.offset = p;
    e.size = p + 8;
    e.xxh64 = p + 16;
    p += 24;
    p += 4 + get_at<uint32_t>(file, p);
    out.push_back(e);
  }
  return out;
}

size_t metadata_value_pos(const std::vector<uint8_t>& file, const std::string& key) {
  detail::Header h = header_of(file);
  std::string needle;
  needle.push_back(static_cast<char>(key.size() & 0xff));
  needle.push_back(static_cast<char>(key.size() >> 8));
  needle += key;
  auto begin = file.begin() + static_cast<std::ptrdiff_t>(h.metadata_offset);
  auto end = begin + static_cast<std::ptrdiff_t>(h.metadata_size);
  auto it = std::search(begin, end, needle.begin(), needle.end());
  REQUIRE_MESSAGE(it != end, "metadata key " << key << " not found");
  return static_cast<size_t>(it - file.begin()) + needle.size() + 1;  // skip the type byte
}

int run_tool(const std::string& name, const std::string& args, std::string* out, std::string* err) {
  return run_command(tools_dir() + "/formats/" + name + " " + args, out, err);
}

}  // namespace sbits::test

#include <nlohmann/json.hpp>

namespace sbits::test {

void write_safetensors(const std::string& path, const std::vector<StTensor>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::vector<uint8_t> data;
  for (const StTensor& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  std::string js = h.dump();
  std::vector<uint8_t> out;
  out.reserve(8 + js.size() + data.size());
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(js.size()) >> (8 * i)));
  out.insert(out.end(), js.begin(), js.end());
  out.insert(out.end(), data.begin(), data.end());
  write_file(path, out);
}

std::vector<uint8_t> floats_to_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace sbits::test
