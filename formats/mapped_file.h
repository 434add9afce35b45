// A read-only memory mapping of a whole file (RAII). Internal to formats/.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace sbits::detail {

class MappedFile {
 public:
  // Throws FormatError("<path>: cannot open: <reason>") on failure. An empty file maps to an
  // empty span (mmap rejects length 0).
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Hints the kernel that [p, p+n) will not be read again soon, so the pages leave this
  // process's resident set (they stay in the page cache). Used by importers that stream a
  // large source once.
  void release(const uint8_t* p, uint64_t n) const;
  // Gives up ownership: the caller must munmap(data, size()) itself.
  const uint8_t* detach() {
    const uint8_t* d = data_;
    data_ = nullptr;
    return d;
  }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace sbits::detail
