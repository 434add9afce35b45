// Reads the piece types out of a serialized SentencePiece ModelProto. Internal to engine/text.
//
// libsentencepiece 0.1.x answers IsControl/IsUnknown/IsByte/IsUnused but not "is this piece
// user-defined", which encode_with_specials needs, so we read the types from the protobuf wire
// format ourselves. Only what we need is decoded:
//   ModelProto      field 1 (repeated, length-delimited): SentencePiece
//   SentencePiece   field 1 piece (bytes), field 2 score (float), field 3 type (varint enum:
//                   NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6; absent = NORMAL)
// Every other field is skipped by its wire type.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace sbits::text_detail {

enum class SpPieceType : uint8_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

// The type of every piece in order, or nothing when the bytes are not a well-formed ModelProto
// (bounds-checked: never reads past the span).
std::optional<std::vector<SpPieceType>> read_sentencepiece_piece_types(std::span<const uint8_t> proto);

}  // namespace sbits::text_detail
