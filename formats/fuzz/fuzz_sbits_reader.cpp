// libFuzzer entry point for the .sbits reader: every input must either open (and then pass or
// fail model validation with a FormatError) or be rejected with a FormatError. Anything else —
// a crash, a sanitizer report, another exception type, a huge allocation — is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "formats/sbits_layout.h"

namespace {

// The reader takes a path (it maps the file), so inputs go through an anonymous memory file.
int memfd() {
  static int fd = ::memfd_create("fuzz.sbits", MFD_CLOEXEC);
  return fd;
}

void try_open(const uint8_t* data, size_t size) {
  int fd = memfd();
  if (fd < 0 || ::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return;
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    sbits::OpenOptions options;
    options.verify_tensors = true;
    auto f = sbits::SbitsFile::open(path, options);
    for (const auto& t : f->tensors()) {
      auto b = f->bytes(t);
      volatile uint8_t sink = b.empty() ? 0 : b[b.size() - 1];  // touch the last byte of each tensor
      (void)sink;
    }
    sbits::ModelConfig c = sbits::ModelConfig::from_metadata(f->metadata());
    sbits::validate_model_tensors(*f, c);
  } catch (const sbits::FormatError&) {
    // Rejected cleanly: what the reader is for.
  }
}

// A mutated file almost never keeps a valid header checksum, which would stop the fuzzer at
// the first check. So each input is also tried with its checksum repaired (when the header's
// section bounds lie inside the input), letting mutations reach the metadata and directory
// parsers and the tensor checks.
bool repair_checksum(std::vector<uint8_t>& b) {
  using namespace sbits::detail;
  if (b.size() < kHeaderSize) return false;
  Header h;
  std::memcpy(&h, b.data(), sizeof h);
  auto inside = [&](uint64_t off, uint64_t n) { return off <= b.size() && n <= b.size() - off; };
  if (!inside(h.metadata_offset, h.metadata_size) || !inside(h.directory_offset, h.directory_size)) return false;
  std::span<const uint8_t> all(b);
  h.checksum = header_checksum(h, all.subspan(h.metadata_offset, h.metadata_size),
                               all.subspan(h.directory_offset, h.directory_size));
  std::memcpy(b.data(), &h, sizeof h);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try_open(data, size);
  std::vector<uint8_t> copy(data, data + size);
  if (repair_checksum(copy)) try_open(copy.data(), copy.size());
  return 0;
}
