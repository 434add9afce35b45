// Reader and writer for .sbits v1 files. The byte layout is specified in formats/SBITS.md.
//
// Errors: every failure throws sbits::FormatError whose message names the file, what was
// expected and what was found. Nothing here aborts the process.
// Threading: a SbitsFile is immutable after open(); it may be shared by threads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace sbits {

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Tensor layouts. Ids are stable on disk; see SBITS.md "Layouts".
enum class Layout : uint32_t {
  f32 = 1,
  f16 = 2,
  bf16 = 3,
  u8 = 4,   // raw bytes
  i32 = 5,
};

// Name of a known layout ("f32", ...), or nullptr for an unknown id.
const char* layout_name(uint32_t layout_id);
// Bytes taken by `count` elements of a plain (non-quantized) layout.
uint64_t plain_layout_bytes(Layout layout, uint64_t count);

// A metadata value. Keys are dotted ASCII names ("llama.n_layers").
using MetaValue = std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<uint8_t>>;

class Metadata {
 public:
  void set(const std::string& key, MetaValue value);
  bool has(const std::string& key) const;
  const MetaValue* find(const std::string& key) const;
  // Typed getters throw FormatError naming the key and the type found when it is missing or
  // has another type. get_u64 also accepts a non-negative int64 value.
  uint64_t get_u64(const std::string& key) const;
  int64_t get_i64(const std::string& key) const;
  double get_f64(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<uint8_t>& get_bytes(const std::string& key) const;
  const std::map<std::string, MetaValue>& entries() const { return entries_; }

 private:
  std::map<std::string, MetaValue> entries_;
};

struct TensorInfo {
  std::string name;
  uint32_t layout = 0;            // a Layout id
  uint32_t layout_version = 0;    // version of that layout's byte format
  std::vector<uint64_t> shape;    // outermost first; a matrix is {rows, cols}
  uint64_t offset = 0;            // absolute file offset of the first byte
  uint64_t size = 0;              // bytes
  uint64_t xxh64 = 0;             // of the tensor's bytes, seed 0
  std::vector<uint8_t> aux;       // layout parameters (empty for plain layouts)
  uint64_t element_count() const;
};

struct OpenOptions {
  bool verify_tensors = false;  // hash every tensor at open (otherwise: verify_tensor on demand)
};

class SbitsFile {
 public:
  // Maps the file and validates header, checksum, metadata and directory (every offset and size
  // against the file length and against each other) before returning.
  static std::unique_ptr<SbitsFile> open(const std::string& path, const OpenOptions& options = {});
  ~SbitsFile();
  SbitsFile(const SbitsFile&) = delete;
  SbitsFile& operator=(const SbitsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint32_t version_major() const { return version_major_; }
  uint32_t version_minor() const { return version_minor_; }
  uint32_t alignment() const { return alignment_; }  // every tensor offset is a multiple of it
  const Metadata& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& get(const std::string& name) const;  // throws naming the missing tensor
  std::span<const uint8_t> bytes(const TensorInfo& t) const;
  // Throws FormatError if the tensor's bytes do not hash to its recorded xxh64.
  void verify_tensor(const TensorInfo& t) const;
  // Drops the mapped pages from this process's resident set (they stay in the page cache and
  // fault back in on the next read). For tools that read a large model once per phase.
  void release_pages() const;

 private:
  SbitsFile() = default;
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_major_ = 0, version_minor_ = 0;
  uint32_t alignment_ = 0;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// Writes a .sbits file atomically: tensors stream into a temporary file in the destination's
// directory; commit() writes metadata and directory, fsyncs and renames it into place. If the
// writer is destroyed without commit(), or any step fails, the temporary file is removed and
// the destination is untouched.
class SbitsWriter {
 public:
  // `inputs` are the paths this output was made from; writing over any of them is refused.
  SbitsWriter(const std::string& dest_path, const std::vector<std::string>& inputs);
  ~SbitsWriter();
  SbitsWriter(const SbitsWriter&) = delete;
  SbitsWriter& operator=(const SbitsWriter&) = delete;

  Metadata& metadata() { return metadata_; }
  void add_tensor(const std::string& name, uint32_t layout, uint32_t layout_version,
                  std::vector<uint64_t> shape, std::span<const uint8_t> bytes,
                  std::span<const uint8_t> aux = {});
  // Streaming form, for producers that convert on the fly without holding a whole tensor:
  // `produce` is called once and passes the tensor's bytes, in order and in pieces of any size,
  // to the sink it is given; together they must be exactly `size` bytes.
  using TensorSink = std::function<void(std::span<const uint8_t>)>;
  using TensorProducer = std::function<void(const TensorSink&)>;
  void add_tensor_stream(const std::string& name, uint32_t layout, uint32_t layout_version,
                         std::vector<uint64_t> shape, uint64_t size, const TensorProducer& produce,
                         std::span<const uint8_t> aux = {});
  // Tensor alignment in bytes (a power of two, 256..2^30; default 256). Only before the first
  // tensor.
  void set_alignment(uint32_t alignment);
  // Writes metadata, directory and header, fsyncs and renames into place. Any failure in this
  // or an earlier call removes the temporary file; the writer then refuses further calls.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Metadata metadata_;
};

}  // namespace sbits
