// Helpers for the formats tests: tiny models, raw file bytes, and patching .sbits files in
// place (with the header checksum recomputed, so that a test reaches the check it targets).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "formats/sbits_layout.h"

namespace sbits::test {

std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

// A config small enough for handcrafted files: dim 8, 1 layer, 2 heads, 1 kv head.
ModelConfig tiny_config();
// Writes a complete model (f32 weights with deterministic values) with model metadata.
void write_tiny_model(const std::string& path, const ModelConfig& c = tiny_config());

detail::Header header_of(const std::vector<uint8_t>& file);
void set_header(std::vector<uint8_t>& file, const detail::Header& h);
// Recomputes the header checksum over the (possibly patched) header, metadata and directory.
void fix_checksum(std::vector<uint8_t>& file);

// Byte positions of one directory entry's fields inside the file.
struct EntryPos {
  std::string name;
  size_t layout, layout_version, ndim, dims, offset, size, xxh64;
};
std::vector<EntryPos> directory_entries(const std::vector<uint8_t>& file);

template <typename T>
T get_at(const std::vector<uint8_t>& b, size_t pos) {
  T v;
  std::memcpy(&v, b.data() + pos, sizeof v);
  return v;
}
template <typename T>
void put_at(std::vector<uint8_t>& b, size_t pos, T v) {
  std::memcpy(b.data() + pos, &v, sizeof v);
}

// Position of the value of metadata key `key` (just after its type byte).
size_t metadata_value_pos(const std::vector<uint8_t>& file, const std::string& key);

// Runs a built tool (formats/NAME under tools_dir()) with arguments; returns the exit status.
int run_tool(const std::string& name, const std::string& args, std::string* out = nullptr, std::string* err = nullptr);

}  // namespace sbits::test

namespace sbits::test {

// A tensor for write_safetensors: raw little-endian bytes of `dtype` ("F32", "BF16", ...).
struct StTensor {
  std::string name, dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;
};
// Writes a .safetensors file the way the format defines it (8-byte length, JSON, data).
void write_safetensors(const std::string& path, const std::vector<StTensor>& tensors);
std::vector<uint8_t> floats_to_bytes(const std::vector<float>& v);

}  // namespace sbits::test
