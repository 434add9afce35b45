#include "engine/text/sentencepiece_proto.h"

namespace sbits::text_detail {
namespace {

// A bounds-checked cursor over protobuf wire format; any overrun sets ok = false.
struct WireReader {
  std::span<const uint8_t> data;
  size_t pos = 0;
  bool ok = true;

  bool done() const { return !ok || pos >= data.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= data.size()) break;
      const uint8_t b = data[pos++];
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  std::span<const uint8_t> bytes(uint64_t n) {
    if (!ok || n > data.size() - pos) {
      ok = false;
      return {};
    }
    auto s = data.subspan(pos, static_cast<size_t>(n));
    pos += static_cast<size_t>(n);
    return s;
  }
  // Skips a field's value of the given wire type (0 varint, 1 fixed64, 2 bytes, 5 fixed32).
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: bytes(8); break;
      case 2: bytes(varint()); break;
      case 5: bytes(4); break;
      default: ok = false;  // groups (3, 4) are not used by sentencepiece_model.proto
    }
  }
};

std::optional<SpPieceType> read_piece_type(std::span<const uint8_t> msg) {
  WireReader r{msg};
  auto type = SpPieceType::normal;
  while (!r.done()) {
    const uint64_t key = r.varint();
    const auto field = key >> 3;
    const auto wire = static_cast<uint32_t>(key & 7);
    if (field == 3 && wire == 0) {
      const uint64_t t = r.varint();
      if (t < 1 || t > 6) return std::nullopt;
      type = static_cast<SpPieceType>(t);
    } else {
      r.skip(wire);
    }
  }
  if (!r.ok) return std::nullopt;
  return type;
}

}  // namespace

std::optional<std::vector<SpPieceType>> read_sentencepiece_piece_types(std::span<const uint8_t> proto) {
  WireReader r{proto};
  std::vector<SpPieceType> types;
  while (!r.done()) {
    const uint64_t key = r.varint();
    const auto wire = static_cast<uint32_t>(key & 7);
    if ((key >> 3) == 1 && wire == 2) {
      auto t = read_piece_type(r.bytes(r.varint()));
      if (!t || !r.ok) return std::nullopt;
      types.push_back(*t);
    } else {
      r.skip(wire);
    }
  }
  if (!r.ok) return std::nullopt;
  return types;
}

}  // namespace sbits::text_detail
