// Metadata: the typed key/value store, and its on-disk encoding (SBITS.md "Metadata section").
#include <cstring>

#include "formats/bytes.h"
#include "formats/sbits_file.h"
#include "formats/sbits_layout.h"

namespace sbits {
namespace {

const char* value_type_name(const MetaValue& v) {
  static const char* names[] = {"u64", "i64", "f64", "bool", "string", "bytes"};
  return names[v.index()];
}

}  // namespace

void Metadata::set(const std::string& key, MetaValue value) {
  if (!detail::valid_key(key)) {
    throw FormatError("metadata key \"" + key + "\": expected 1..65535 printable ASCII characters without spaces");
  }
  if (auto* s = std::get_if<std::string>(&value)) {
    auto b = reinterpret_cast<const uint8_t*>(s->data());
    if (!detail::valid_utf8({b, s->size()})) throw FormatError("metadata " + key + ": string value is not valid UTF-8");
  }
  entries_[key] = std::move(value);
}

bool Metadata::has(const std::string& key) const { return entries_.count(key) != 0; }

const MetaValue* Metadata::find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

namespace {
template <typename T>
const T& typed(const Metadata& m, const std::string& key, const char* want) {
  const MetaValue* v = m.find(key);
  if (!v) throw FormatError("metadata " + key + ": missing (expected " + want + ")");
  if (const T* p = std::get_if<T>(v)) return *p;
  throw FormatError("metadata " + key + ": expected " + want + ", found " + value_type_name(*v));
}
}  // namespace

uint64_t Metadata::get_u64(const std::string& key) const {
  const MetaValue* v = find(key);
  if (v) {
    if (auto* i = std::get_if<int64_t>(v)) {
      if (*i < 0) throw FormatError("metadata " + key + ": expected a non-negative integer, found " + std::to_string(*i));
      return static_cast<uint64_t>(*i);
    }
  }
  return typed<uint64_t>(*this, key, "u64");
}
int64_t Metadata::get_i64(const std::string& key) const { return typed<int64_t>(*this, key, "i64"); }
double Metadata::get_f64(const std::string& key) const { return typed<double>(*this, key, "f64"); }
bool Metadata::get_bool(const std::string& key) const { return typed<bool>(*this, key, "bool"); }
const std::string& Metadata::get_string(const std::string& key) const {
  return typed<std::string>(*this, key, "string");
}
const std::vector<uint8_t>& Metadata::get_bytes(const std::string& key) const {
  return typed<std::vector<uint8_t>>(*this, key, "bytes");
}

namespace detail {

bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 0xffff) return false;
  for (unsigned char c : key) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

bool valid_utf8(std::span<const uint8_t> s) {
  size_t i = 0;
  while (i < s.size()) {
    uint8_t c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
    else return false;
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

std::string meta_type_name(MetaType t) {
  switch (t) {
    case MetaType::u64: return "u64";
    case MetaType::i64: return "i64";
    case MetaType::f64: return "f64";
    case MetaType::boolean: return "bool";
    case MetaType::string: return "string";
    case MetaType::bytes: return "bytes";
  }
  return "type " + std::to_string(static_cast<unsigned>(t));
}

std::string encode_metadata(const Metadata& meta) {
  ByteWriter w;
  w.put<uint64_t>(meta.entries().size());
  for (const auto& [key, value] : meta.entries()) {  // std::map: already sorted by bytes
    w.put<uint16_t>(static_cast<uint16_t>(key.size()));
    w.put_bytes(key.data(), key.size());
    w.put<uint8_t>(static_cast<uint8_t>(value.index() + 1));  // variant order == type ids
    std::visit([&w](const auto& v) {
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, bool>) {
        w.put<uint8_t>(v ? 1 : 0);
      } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<uint8_t>>) {
        w.put<uint64_t>(v.size());
        w.put_bytes(v.data(), v.size());
      } else {
        w.put<T>(v);
      }
    }, value);
  }
  return std::move(w.str());
}

namespace {

MetaValue decode_value(ByteReader& r, const std::string& key, uint8_t type) {
  const std::string where = r.where() + ": key " + key;
  switch (static_cast<MetaType>(type)) {
    case MetaType::u64: return r.read<uint64_t>();
    case MetaType::i64: return r.read<int64_t>();
    case MetaType::f64: return r.read<double>();
    case MetaType::boolean: {
      uint8_t b = r.read<uint8_t>();
      if (b > 1) throw FormatError(where + ": bool: expected 0 or 1, found " + std::to_string(b));
      return b == 1;
    }
    case MetaType::string: {
      uint64_t n = r.read<uint64_t>();
      auto s = r.take(n);
      if (!valid_utf8(s)) throw FormatError(where + ": string is not valid UTF-8");
      return std::string(reinterpret_cast<const char*>(s.data()), s.size());
    }
    case MetaType::bytes: {
      uint64_t n = r.read<uint64_t>();
      auto s = r.take(n);
      return std::vector<uint8_t>(s.begin(), s.end());
    }
  }
  throw FormatError(where + ": unknown value type " + std::to_string(type) +
                    " (this reader knows 1=u64, 2=i64, 3=f64, 4=bool, 5=string, 6=bytes)");
}

}  // namespace

Metadata decode_metadata(std::span<const uint8_t> section, const std::string& where) {
  ByteReader r(section, where);
  uint64_t count = r.read<uint64_t>();
  // Bound the count by what the section could hold before trusting it with a loop.
  if (count > r.remaining() / kMinMetaEntryBytes) {
    throw FormatError(where + ": entry count " + std::to_string(count) + " cannot fit in " +
                      std::to_string(section.size()) + " bytes");
  }
  Metadata meta;
  std::string prev;
  for (uint64_t i = 0; i < count; ++i) {
    uint16_t klen = r.read<uint16_t>();
    std::string key(r.take_string(klen));
    if (!valid_key(key)) {
      throw FormatError(where + ": entry " + std::to_string(i) + ": key is not 1..65535 printable ASCII characters");
    }
    if (i > 0 && key <= prev) {
      throw FormatError(where + ": key " + key + ": expected keys unique and sorted, found it after " + prev);
    }
    uint8_t type = r.read<uint8_t>();
    meta.set(key, decode_value(r, key, type));
    prev = std::move(key);
  }
  if (r.remaining() != 0) {
    throw FormatError(where + ": expected " + std::to_string(count) + " entries filling the section, found " +
                      std::to_string(r.remaining()) + " bytes left over");
  }
  return meta;
}

}  // namespace detail
}  // namespace sbits
