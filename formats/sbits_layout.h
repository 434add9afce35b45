// On-disk constants and the fixed header of .sbits v1 (see SBITS.md "Header"). Internal to
// formats/ and its tests: the engine uses sbits_file.h.
//
//  0        8       12    14    16     20         24               40               56
//  | magic  |endian |major|minor|flags |alignment | metadata off/sz | directory off/sz|
//  56              72            80          88             120        128
//  | data off/sz   | tensor_count| file_size | reserved(32) | checksum |
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace sbits::detail {

// PNG-style magic: 0x89 catches 7-bit stripping, CR LF / lone LF catch line-ending
// conversions, 0x1a stops DOS `type`. See SBITS.md "Magic".
inline constexpr uint8_t kMagic[8] = {0x89, 'S', 'B', 'T', '\r', '\n', 0x1a, '\n'};
inline constexpr uint32_t kEndianMarker = 0x01020304;
inline constexpr uint16_t kVersionMajor = 1;
inline constexpr uint16_t kVersionMinor = 0;
inline constexpr uint32_t kDefaultAlignment = 256;
inline constexpr uint32_t kMinAlignment = 256;
inline constexpr uint32_t kMaxAlignment = 1u << 30;
inline constexpr uint32_t kRequiredFlagsMask = 0x0000ffffu;  // bits a reader must understand
inline constexpr uint32_t kKnownRequiredFlags = 0;
inline constexpr size_t kHeaderSize = 128;
inline constexpr size_t kChecksumOffset = 120;
inline constexpr unsigned kMaxDims = 4;
// Smallest encodings, used to bound counts by section sizes before allocating.
inline constexpr uint64_t kMinMetaEntryBytes = 2 + 1 + 1 + 1;  // key_len, key, type, bool
inline constexpr uint64_t kMinDirEntryBytes = 2 + 1 + 4 + 4 + 1 + 8 + 8 + 8 + 8 + 4;

enum class MetaType : uint8_t { u64 = 1, i64 = 2, f64 = 3, boolean = 4, string = 5, bytes = 6 };

// The header as it sits on disk. Only little-endian hosts are supported (static_assert in the
// reader), so it can be memcpy'd.
struct Header {
  uint8_t magic[8];
  uint32_t endian;
  uint16_t version_major;
  uint16_t version_minor;
  uint32_t flags;
  uint32_t alignment;
  uint64_t metadata_offset;
  uint64_t metadata_size;
  uint64_t directory_offset;
  uint64_t directory_size;
  uint64_t data_offset;
  uint64_t data_size;
  uint64_t tensor_count;
  uint64_t file_size;
  uint8_t reserved[32];
  uint64_t checksum;
};
static_assert(sizeof(Header) == kHeaderSize, "the on-disk header is 128 bytes");
static_assert(offsetof(Header, checksum) == kChecksumOffset);
static_assert(offsetof(Header, metadata_offset) == 24);
static_assert(offsetof(Header, reserved) == 88);

// XXH64 (seed 0) of header-with-zeroed-checksum, metadata bytes, directory bytes.
uint64_t header_checksum(const Header& h, std::span<const uint8_t> metadata,
                         std::span<const uint8_t> directory);

}  // namespace sbits::detail

namespace sbits {
class Metadata;
namespace detail {
// Metadata section <-> Metadata (formats/metadata.cpp). `where` prefixes error messages.
std::string encode_metadata(const Metadata& meta);
Metadata decode_metadata(std::span<const uint8_t> section, const std::string& where);
// Key/name rule: 1..65535 bytes of printable ASCII without spaces.
bool valid_key(const std::string& key);
bool valid_utf8(std::span<const uint8_t> s);
std::string meta_type_name(MetaType t);
}  // namespace detail
}  // namespace sbits

namespace sbits {
struct TensorInfo;
namespace detail {
// The layout table (formats/layouts.cpp): the one place where layouts are added.
struct LayoutDef {
  uint32_t id;
  const char* name;
  uint32_t max_version;   // versions 1..max_version are understood
  uint32_t element_bytes; // plain layouts; 0 for layouts whose size rule lives in check()
};
const LayoutDef* find_layout(uint32_t id);
// "f32, f16, bf16, u8, i32": for error messages.
std::string known_layout_names();
// Checks a tensor's layout id, version, aux and size against its shape; throws FormatError
// prefixed with `where`. Assumes the shape itself was checked (dims >= 1, no overflow).
void check_tensor_layout(const TensorInfo& t, const std::string& where);
// Checks what only the tensor's bytes can show (the tiled layout's bitwidth table); plain
// layouts have nothing to check. Called by the reader at open, after check_tensor_layout.
void check_tensor_bytes(const TensorInfo& t, std::span<const uint8_t> bytes, const std::string& where);
// Shape as "[512, 256]".
std::string shape_string(const std::vector<uint64_t>& shape);
}  // namespace detail
}  // namespace sbits
