// SbitsFile: maps a .sbits file and validates all of it before use (SBITS.md "Validation").
#include <sys/mman.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include "formats/bytes.h"
#include "formats/mapped_file.h"
#include "formats/sbits_file.h"
#include "formats/sbits_layout.h"

static_assert(std::endian::native == std::endian::little,
              "the reader memcpy's little-endian fields; a big-endian port must byte-swap");

namespace sbits {
namespace detail {

uint64_t header_checksum(const Header& h, std::span<const uint8_t> metadata, std::span<const uint8_t> directory) {
  Header copy = h;
  copy.checksum = 0;
  XXH64_state_t* st = XXH64_createState();
  if (!st) throw FormatError("out of memory for the checksum state");
  XXH64_reset(st, 0);
  XXH64_update(st, &copy, sizeof(copy));
  XXH64_update(st, metadata.data(), metadata.size());
  XXH64_update(st, directory.data(), directory.size());
  uint64_t r = XXH64_digest(st);
  XXH64_freeState(st);
  return r;
}

}  // namespace detail

namespace {
using namespace detail;

std::string hex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// The magic is wrong: say whether it looks like a text-mode transfer damaged it.
[[noreturn]] void bad_magic(const uint8_t* m, const std::string& p) {
  const uint8_t crlf_to_lf[7] = {0x89, 'S', 'B', 'T', '\n', 0x1a, '\n'};
  const uint8_t lf_to_crlf[8] = {0x89, 'S', 'B', 'T', '\r', '\n', 0x1a, '\r'};
  const uint8_t all_lf_to_crlf[8] = {0x89, 'S', 'B', 'T', '\r', '\r', '\n', 0x1a};
  const uint8_t stripped[8] = {0x09, 'S', 'B', 'T', '\r', '\n', 0x1a, '\n'};
  if (!std::memcmp(m, crlf_to_lf, 7) || !std::memcmp(m, lf_to_crlf, 8) || !std::memcmp(m, all_lf_to_crlf, 8) ||
      !std::memcmp(m, stripped, 8)) {
    throw FormatError(p + ": bad magic: the file was damaged by a text-mode transfer (line endings or the "
                          "8th bit changed); copy it again in binary mode");
  }
  char found[32];
  std::snprintf(found, sizeof found, "%02x %02x %02x %02x %02x %02x %02x %02x", m[0], m[1], m[2], m[3], m[4], m[5],
                m[6], m[7]);
  throw FormatError(p + ": not a .sbits file: expected magic 89 53 42 54 0d 0a 1a 0a, found " + found);
}

void check_section(const char* name, uint64_t off, uint64_t size, uint64_t min_start, uint64_t file_size,
                   const std::string& p) {
  uint64_t end;
  if (__builtin_add_overflow(off, size, &end) || off < min_start || end > file_size) {
    throw FormatError(p + ": " + name + " section [" + std::to_string(off) + ", +" + std::to_string(size) +
                      "): expected within [" + std::to_string(min_start) + ", " + std::to_string(file_size) +
                      ") after the previous section, found out of bounds");
  }
}

void check_header(const Header& h, uint64_t actual_size, const std::string& p) {
  if (std::memcmp(h.magic, kMagic, 8) != 0) bad_magic(h.magic, p);
  if (h.endian != kEndianMarker) {
    if (h.endian == 0x04030201) throw FormatError(p + ": file is big-endian; this reader supports little-endian files");
    throw FormatError(p + ": bad endian marker: expected 0x01020304, found 0x" + hex64(h.endian).substr(8));
  }
  if (h.version_major != kVersionMajor) {
    throw FormatError(p + ": format version " + std::to_string(h.version_major) + "." +
                      std::to_string(h.version_minor) + ", this reader supports 1.x");
  }
  if (uint32_t unknown = h.flags & kRequiredFlagsMask & ~kKnownRequiredFlags) {
    throw FormatError(p + ": unknown required feature flags 0x" + hex64(unknown).substr(8) +
                      " (this reader knows none)");
  }
  if (h.alignment < kMinAlignment || h.alignment > kMaxAlignment || !std::has_single_bit(h.alignment)) {
    throw FormatError(p + ": alignment: expected a power of two in [256, 2^30], found " + std::to_string(h.alignment));
  }
  if (h.file_size != actual_size) {
    throw FormatError(p + ": file size: header says " + std::to_string(h.file_size) + " bytes, found " +
                      std::to_string(actual_size) + (actual_size < h.file_size ? " (truncated)" : ""));
  }
  if (h.data_offset % h.alignment != 0) {
    throw FormatError(p + ": data offset " + std::to_string(h.data_offset) + ": expected a multiple of alignment " +
                      std::to_string(h.alignment));
  }
  check_section("data", h.data_offset, h.data_size, kHeaderSize, actual_size, p);
  check_section("metadata", h.metadata_offset, h.metadata_size, h.data_offset + h.data_size, actual_size, p);
  check_section("directory", h.directory_offset, h.directory_size, h.metadata_offset + h.metadata_size,
                actual_size, p);
}

TensorInfo read_entry(ByteReader& r, uint64_t index) {
  TensorInfo t;
  const std::string where = r.where() + ": entry " + std::to_string(index);
  uint16_t nlen = r.read<uint16_t>();
  t.name = std::string(r.take_string(nlen));
  if (!valid_key(t.name)) throw FormatError(where + ": tensor name is not 1..65535 printable ASCII characters");
  t.layout = r.read<uint32_t>();
  t.layout_version = r.read<uint32_t>();
  uint8_t ndim = r.read<uint8_t>();
  if (ndim < 1 || ndim > kMaxDims) {
    throw FormatError(where + " (" + t.name + "): ndim: expected 1..4, found " + std::to_string(ndim));
  }
  for (unsigned d = 0; d < ndim; ++d) {
    uint64_t v = r.read<uint64_t>();
    if (v == 0) throw FormatError(where + " (" + t.name + "): dimension " + std::to_string(d) + " is 0");
    t.shape.push_back(v);
  }
  t.offset = r.read<uint64_t>();
  t.size = r.read<uint64_t>();
  t.xxh64 = r.read<uint64_t>();
  uint32_t aux = r.read<uint32_t>();
  auto a = r.take(aux);
  t.aux.assign(a.begin(), a.end());
  return t;
}

std::vector<TensorInfo> read_directory(std::span<const uint8_t> section, const Header& h, const std::string& p) {
  ByteReader r(section, p + ": directory");
  uint64_t count = r.read<uint64_t>();
  if (count > r.remaining() / kMinDirEntryBytes) {
    throw FormatError(p + ": directory: tensor count " + std::to_string(count) + " cannot fit in " +
                      std::to_string(section.size()) + " bytes");
  }
  if (count != h.tensor_count) {
    throw FormatError(p + ": directory: expected " + std::to_string(h.tensor_count) +
                      " tensors (header tensor_count), found " + std::to_string(count));
  }
  std::vector<TensorInfo> tensors;
  tensors.reserve(count);
  for (uint64_t i = 0; i < count; ++i) tensors.push_back(read_entry(r, i));
  if (r.remaining() != 0) {
    throw FormatError(p + ": directory: " + std::to_string(r.remaining()) + " bytes left over after " +
                      std::to_string(count) + " entries");
  }
  return tensors;
}

void check_tensors(const std::vector<TensorInfo>& tensors, const Header& h, const std::string& p) {
  const uint64_t data_end = h.data_offset + h.data_size;  // no overflow: checked in check_header
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors) {
    const std::string w = p + ": tensor " + t.name;
    t.element_count();  // throws on overflow
    check_tensor_layout(t, p + ": ");
    uint64_t end;
    if (t.size == 0 || t.offset < h.data_offset || __builtin_add_overflow(t.offset, t.size, &end) || end > data_end) {
      throw FormatError(w + ": bytes [" + std::to_string(t.offset) + ", +" + std::to_string(t.size) +
                        "): expected inside the data section [" + std::to_string(h.data_offset) + ", " +
                        std::to_string(data_end) + ")");
    }
    if (t.offset % h.alignment != 0) {
      throw FormatError(w + ": offset " + std::to_string(t.offset) + ": expected a multiple of alignment " +
                        std::to_string(h.alignment));
    }
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (a.offset + a.size > b.offset) {
      throw FormatError(p + ": tensors " + a.name + " and " + b.name + " overlap: " + a.name + " ends at " +
                        std::to_string(a.offset + a.size) + ", " + b.name + " starts at " + std::to_string(b.offset));
    }
  }
}

}  // namespace

std::unique_ptr<SbitsFile> SbitsFile::open(const std::string& path, const OpenOptions& options) {
  MappedFile map(path);
  const uint64_t size = map.size();
  if (size < kHeaderSize) {
    throw FormatError(path + ": file is " + std::to_string(size) + " bytes, smaller than the 128-byte header" +
                      (size >= 4 && std::memcmp(map.bytes().data(), kMagic, 4) == 0 ? " (truncated)" : ""));
  }
  Header h;
  std::memcpy(&h, map.bytes().data(), sizeof h);
  check_header(h, size, path);
  auto md = map.bytes().subspan(h.metadata_offset, h.metadata_size);
  auto dir = map.bytes().subspan(h.directory_offset, h.directory_size);
  uint64_t sum = header_checksum(h, md, dir);
  if (sum != h.checksum) {
    throw FormatError(path + ": header checksum: expected " + hex64(h.checksum) + ", found " + hex64(sum) +
                      " (header, metadata or directory corrupted)");
  }
  std::unique_ptr<SbitsFile> f(new SbitsFile());
  f->path_ = path;
  f->metadata_ = decode_metadata(md, path + ": metadata");
  f->tensors_ = read_directory(dir, h, path);
  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    if (!f->index_.emplace(f->tensors_[i].name, i).second) {
      throw FormatError(path + ": tensor " + f->tensors_[i].name + ": name appears twice in the directory");
    }
  }
  check_tensors(f->tensors_, h, path);
  for (const TensorInfo& t : f->tensors_) check_tensor_bytes(t, map.bytes().subspan(t.offset, t.size), path + ": ");
  f->version_major_ = h.version_major;
  f->version_minor_ = h.version_minor;
  f->alignment_ = h.alignment;
  f->size_ = size;
  f->base_ = map.detach();  // from here on ~SbitsFile unmaps
  if (options.verify_tensors) {
    for (const TensorInfo& t : f->tensors_) f->verify_tensor(t);
  }
  return f;
}

void SbitsFile::release_pages() const {
  if (!base_ || size_ == 0) return;
  ::madvise(const_cast<uint8_t*>(base_), size_, MADV_DONTNEED);  // a hint: errors ignored
}

SbitsFile::~SbitsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const TensorInfo* SbitsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SbitsFile::get(const std::string& name) const {
  if (const TensorInfo* t = find(name)) return *t;
  throw FormatError(path_ + ": tensor " + name + ": not found (the file has " + std::to_string(tensors_.size()) +
                    " tensors)");
}

std::span<const uint8_t> SbitsFile::bytes(const TensorInfo& t) const {
  // Bounds were validated at open for this file's TensorInfos; re-check in case a caller passes
  // a TensorInfo from elsewhere.
  if (t.offset > size_ || t.size > size_ - t.offset) {
    throw FormatError(path_ + ": tensor " + t.name + ": bytes out of the file's bounds");
  }
  return {base_ + t.offset, t.size};
}

void SbitsFile::verify_tensor(const TensorInfo& t) const {
  auto b = bytes(t);
  uint64_t h = XXH64(b.data(), b.size(), 0);
  if (h != t.xxh64) {
    throw FormatError(path_ + ": tensor " + t.name + ": checksum: expected " + hex64(t.xxh64) + ", found " + hex64(h) +
                      " (tensor data corrupted)");
  }
}

}  // namespace sbits
