// Bounds-checked little-endian cursors over byte buffers, shared by the .sbits reader/writer and
// the importers. Internal to formats/.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "formats/sbits_file.h"

namespace sbits::detail {

// Reads little-endian values from a span; every read is checked against the end and throws
// FormatError("<where>: truncated: need N bytes at offset O, section has S") instead of
// reading past it.
class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> data, std::string where) : data_(data), where_(std::move(where)) {}

  template <typename T>
  T read() {
    T v;
    std::memcpy(&v, take(sizeof(T)).data(), sizeof(T));  // memcpy: fields are unaligned
    return v;
  }
  std::span<const uint8_t> take(uint64_t n) {
    if (n > remaining()) {
      throw FormatError(where_ + ": truncated: need " + std::to_string(n) + " bytes at offset " +
                        std::to_string(pos_) + ", section has " + std::to_string(data_.size()));
    }
    auto s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view take_string(uint64_t n) {
    auto s = take(n);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }
  uint64_t remaining() const { return data_.size() - pos_; }
  uint64_t pos() const { return pos_; }
  const std::string& where() const { return where_; }

 private:
  std::span<const uint8_t> data_;
  std::string where_;
  uint64_t pos_ = 0;
};

// Appends little-endian values to a string used as a byte buffer.
class ByteWriter {
 public:
  template <typename T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void put_bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

// a * b and a + b, or throw naming `what`, for sizes read from untrusted files.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw FormatError(what + ": size overflows 64 bits");
  return r;
}
inline uint64_t checked_add(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw FormatError(what + ": size overflows 64 bits");
  return r;
}

}  // namespace sbits::detail
