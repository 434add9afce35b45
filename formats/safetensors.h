// A bounds-checked reader of Hugging Face .safetensors files: 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets: [begin, end)}}, then the data.
// The file is memory-mapped; tensor bytes are spans into the mapping. Internal to formats/.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/mapped_file.h"
#include "formats/sbits_file.h"

namespace sbits::detail {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;              // as written: "BF16", "F32", "I64", ...
  std::optional<Layout> layout;   // set for the float dtypes the importer accepts
  std::vector<uint64_t> shape;
  std::span<const uint8_t> bytes; // inside the mapping
};

class SafetensorsFile {
 public:
  // Maps and parses `path`; throws FormatError naming the file and what is wrong: header
  // length past the end, malformed JSON, unknown dtype, data_offsets outside the data or not
  // matching dtype x shape, overlapping tensors.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  const MappedFile& map() const { return map_; }

 private:
  MappedFile map_;
  std::map<std::string, SafetensorsTensor> tensors_;
};

}  // namespace sbits::detail
