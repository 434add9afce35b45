// SbitsWriter: streams tensors into "<dest>.tmp-XXXXXX" beside the destination, then writes
// metadata, directory and header and renames atomically (SBITS.md "Byte layout").
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "formats/bytes.h"
#include "formats/sbits_file.h"
#include "formats/sbits_layout.h"

namespace sbits {
namespace fs = std::filesystem;
using namespace detail;

namespace {

std::string errno_text() { return std::strerror(errno); }

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

std::string parent_dir(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? "." : p.string();
}

}  // namespace

struct SbitsWriter::Impl {
  std::string dest, tmp;
  int fd = -1;
  uint32_t alignment = kDefaultAlignment;
  uint64_t pos = 0;  // current end of the temp file
  uint64_t data_offset = 0;
  std::vector<TensorInfo> tensors;
  std::set<std::string> names;
  bool done = false;  // committed or failed: no further calls accepted
  std::string failure;

  void write_all(const void* p, uint64_t n) {
    auto* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw FormatError(dest + ": write failed: " + errno_text());
      c += w;
      n -= static_cast<uint64_t>(w);
      pos += static_cast<uint64_t>(w);
    }
  }
  void pad_to(uint64_t boundary) {
    static const char zeros[4096] = {};
    uint64_t want = (pos + boundary - 1) / boundary * boundary;
    while (pos < want) write_all(zeros, std::min<uint64_t>(want - pos, sizeof zeros));
  }
  void discard() noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (!tmp.empty()) ::unlink(tmp.c_str());
    tmp.clear();
  }
  void start() {
    data_offset = (kHeaderSize + alignment - 1) / alignment * alignment;
    std::string zeros(data_offset, '\0');  // the header is rewritten at commit
    write_all(zeros.data(), zeros.size());
  }
  // Runs a step; on failure the temp file is removed and the writer refuses further calls.
  template <typename F>
  void step(F&& f) {
    if (done) {
      throw FormatError(dest + ": writer " + (failure.empty() ? std::string("already committed") : "failed earlier: " + failure));
    }
    try {
      f();
    } catch (const std::exception& e) {
      failure = e.what();
      done = true;
      discard();
      throw;
    }
  }
  void add(TensorInfo t, const std::function<void(const std::function<void(std::span<const uint8_t>)>&)>& produce);
  void finish(const Metadata& meta);
};

SbitsWriter::SbitsWriter(const std::string& dest_path, const std::vector<std::string>& inputs)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.dest = dest_path;
  for (const std::string& in : inputs) {
    if (same_file(dest_path, in)) {
      throw FormatError(dest_path + ": refusing to overwrite an input of this conversion (" + in + ")");
    }
  }
  std::error_code ec;
  if (fs::is_directory(dest_path, ec)) throw FormatError(dest_path + ": is a directory, expected a file path");
  std::string tmpl = dest_path + ".tmp-XXXXXX";
  w.fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (w.fd < 0) throw FormatError(dest_path + ": cannot create a temporary file in " + parent_dir(dest_path) + ": " + errno_text());
  w.tmp = tmpl;
  w.step([&] {
    if (::fchmod(w.fd, 0644) != 0) throw FormatError(w.tmp + ": chmod failed: " + errno_text());
    w.start();
  });
}

SbitsWriter::~SbitsWriter() {
  if (impl_) impl_->discard();  // a no-op after commit()
}

void SbitsWriter::set_alignment(uint32_t alignment) {
  Impl& w = *impl_;
  w.step([&] {
    if (!w.tensors.empty()) throw FormatError(w.dest + ": set_alignment after the first tensor");
    if (alignment < kMinAlignment || alignment > kMaxAlignment || (alignment & (alignment - 1)) != 0) {
      throw FormatError(w.dest + ": alignment: expected a power of two in [256, 2^30], found " + std::to_string(alignment));
    }
    // Restart the (still empty) data section with the new padding.
    if (::ftruncate(w.fd, 0) != 0 || ::lseek(w.fd, 0, SEEK_SET) != 0) throw FormatError(w.tmp + ": " + errno_text());
    w.pos = 0;
    w.alignment = alignment;
    w.start();
  });
}

void SbitsWriter::Impl::add(TensorInfo t,
                            const std::function<void(const std::function<void(std::span<const uint8_t>)>&)>& produce) {
  const std::string w = dest + ": ";
  if (!valid_key(t.name)) throw FormatError(w + "tensor name \"" + t.name + "\": expected 1..65535 printable ASCII characters");
  if (names.count(t.name)) throw FormatError(w + "tensor " + t.name + ": added twice");
  if (t.shape.empty() || t.shape.size() > kMaxDims) {
    throw FormatError(w + "tensor " + t.name + ": expected 1..4 dimensions, found " + std::to_string(t.shape.size()));
  }
  for (uint64_t d : t.shape) {
    if (d == 0) throw FormatError(w + "tensor " + t.name + ": shape " + shape_string(t.shape) + " has a zero dimension");
  }
  if (t.aux.size() > 0xffffffffu) throw FormatError(w + "tensor " + t.name + ": aux larger than 4 GiB");
  check_tensor_layout(t, w);
  pad_to(alignment);
  t.offset = pos;
  XXH64_state_t* st = XXH64_createState();
  if (!st) throw FormatError(w + "out of memory");
  XXH64_reset(st, 0);
  uint64_t written = 0;
  try {
    produce([&](std::span<const uint8_t> chunk) {
      if (chunk.size() > t.size - written) {
        throw FormatError(w + "tensor " + t.name + ": producer wrote more than the declared " + std::to_string(t.size) + " bytes");
      }
      XXH64_update(st, chunk.data(), chunk.size());
      write_all(chunk.data(), chunk.size());
      written += chunk.size();
    });
  } catch (...) {
    XXH64_freeState(st);
    throw;
  }
  t.xxh64 = XXH64_digest(st);
  XXH64_freeState(st);
  if (written != t.size) {
    throw FormatError(w + "tensor " + t.name + ": expected " + std::to_string(t.size) + " bytes, producer wrote " +
                      std::to_string(written));
  }
  names.insert(t.name);
  tensors.push_back(std::move(t));
}

void SbitsWriter::add_tensor(const std::string& name, uint32_t layout, uint32_t layout_version,
                             std::vector<uint64_t> shape, std::span<const uint8_t> bytes,
                             std::span<const uint8_t> aux) {
  add_tensor_stream(name, layout, layout_version, std::move(shape), bytes.size(),
                    [bytes](const auto& sink) { sink(bytes); }, aux);
}

void SbitsWriter::add_tensor_stream(const std::string& name, uint32_t layout, uint32_t layout_version,
                                    std::vector<uint64_t> shape, uint64_t size, const TensorProducer& produce,
                                    std::span<const uint8_t> aux) {
  TensorInfo t;
  t.name = name;
  t.layout = layout;
  t.layout_version = layout_version;
  t.shape = std::move(shape);
  t.size = size;
  t.aux.assign(aux.begin(), aux.end());
  impl_->step([&] { impl_->add(std::move(t), produce); });
}

void SbitsWriter::Impl::finish(const Metadata& meta) {
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.endian = kEndianMarker;
  h.version_major = kVersionMajor;
  h.version_minor = kVersionMinor;
  h.alignment = alignment;
  h.data_offset = data_offset;
  h.data_size = pos - data_offset;
  std::string md = encode_metadata(meta);
  ByteWriter dir;
  dir.put<uint64_t>(tensors.size());
  for (const TensorInfo& t : tensors) {
    dir.put<uint16_t>(static_cast<uint16_t>(t.name.size()));
    dir.put_bytes(t.name.data(), t.name.size());
    dir.put<uint32_t>(t.layout);
    dir.put<uint32_t>(t.layout_version);
    dir.put<uint8_t>(static_cast<uint8_t>(t.shape.size()));
    for (uint64_t d : t.shape) dir.put<uint64_t>(d);
    dir.put<uint64_t>(t.offset);
    dir.put<uint64_t>(t.size);
    dir.put<uint64_t>(t.xxh64);
    dir.put<uint32_t>(static_cast<uint32_t>(t.aux.size()));
    dir.put_bytes(t.aux.data(), t.aux.size());
  }
  h.metadata_offset = pos;
  h.metadata_size = md.size();
  write_all(md.data(), md.size());
  h.directory_offset = pos;
  h.directory_size = dir.str().size();
  write_all(dir.str().data(), dir.str().size());
  h.tensor_count = tensors.size();
  h.file_size = pos;
  auto as_span = [](const std::string& s) { return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()); };
  h.checksum = header_checksum(h, as_span(md), as_span(dir.str()));
  if (::pwrite(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) throw FormatError(dest + ": write failed: " + errno_text());
  // Data must be on disk before the name points at it, or a crash could leave a renamed file
  // with holes; the directory fsync makes the rename itself durable.
  if (::fsync(fd) != 0) throw FormatError(dest + ": fsync failed: " + errno_text());
  if (::close(fd) != 0) {
    fd = -1;
    throw FormatError(dest + ": close failed: " + errno_text());
  }
  fd = -1;
  if (::rename(tmp.c_str(), dest.c_str()) != 0) throw FormatError(dest + ": rename from " + tmp + " failed: " + errno_text());
  tmp.clear();  // now owned by its final name
  int dfd = ::open(parent_dir(dest).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: some filesystems refuse fsync on directories
    ::close(dfd);
  }
}

void SbitsWriter::commit() {
  impl_->step([&] {
    impl_->finish(metadata_);
    impl_->done = true;
  });
}

}  // namespace sbits
