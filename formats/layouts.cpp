// The table of tensor layouts (SBITS.md "Layouts"). New layouts (the quantizer's tiled
// mixed-bitwidth ones, ids >= 16) are added here with their size rule and aux check.
#include "formats/sbits_layout.h"

#include "formats/bytes.h"
#include "formats/sbits_file.h"
#include "formats/tiled_layout.h"

namespace sbits {
namespace detail {
namespace {

constexpr LayoutDef kLayouts[] = {
    {1, "f32", 1, 4}, {2, "f16", 1, 2}, {3, "bf16", 1, 2}, {4, "u8", 1, 1}, {5, "i32", 1, 4},
    {kTiledLayoutId, "tiled", kTiledLayoutVersion, 0},
};

}  // namespace

const LayoutDef* find_layout(uint32_t id) {
  for (const auto& l : kLayouts) {
    if (l.id == id) return &l;
  }
  return nullptr;
}

std::string known_layout_names() {
  std::string s;
  for (const auto& l : kLayouts) s += (s.empty() ? "" : ", ") + std::string(l.name);
  return s;
}

std::string shape_string(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_tensor_layout(const TensorInfo& t, const std::string& where) {
  const LayoutDef* l = find_layout(t.layout);
  if (!l) {
    throw FormatError(where + "tensor " + t.name + ": unknown layout id " + std::to_string(t.layout) +
                      " (this reader knows " + known_layout_names() + ")");
  }
  if (t.layout_version < 1 || t.layout_version > l->max_version) {
    throw FormatError(where + "tensor " + t.name + ": layout " + l->name + " version " +
                      std::to_string(t.layout_version) + ", this reader supports versions 1.." +
                      std::to_string(l->max_version));
  }
  if (t.layout == kTiledLayoutId) return check_tiled_info(t, where);  // formats/tiled_layout.cpp
  // Plain layouts: no parameters, size fixed by the shape.
  if (!t.aux.empty()) {
    throw FormatError(where + "tensor " + t.name + ": layout " + l->name + ": expected no aux bytes, found " +
                      std::to_string(t.aux.size()));
  }
  uint64_t want = checked_mul(t.element_count(), l->element_bytes, where + "tensor " + t.name);
  if (t.size != want) {
    throw FormatError(where + "tensor " + t.name + ": expected " + std::to_string(want) + " bytes for " +
                      l->name + " " + shape_string(t.shape) + ", found " + std::to_string(t.size));
  }
}

void check_tensor_bytes(const TensorInfo& t, std::span<const uint8_t> bytes, const std::string& where) {
  if (t.layout == kTiledLayoutId) parse_tiled(t, bytes, where);  // the tile table against the size
}

}  // namespace detail

const char* layout_name(uint32_t layout_id) {
  const detail::LayoutDef* l = detail::find_layout(layout_id);
  return l ? l->name : nullptr;
}

uint64_t plain_layout_bytes(Layout layout, uint64_t count) {
  const detail::LayoutDef* l = detail::find_layout(static_cast<uint32_t>(layout));
  if (!l || l->element_bytes == 0) {
    throw FormatError("layout id " + std::to_string(static_cast<uint32_t>(layout)) + " is not a plain layout");
  }
  return detail::checked_mul(count, l->element_bytes, std::string("layout ") + l->name);
}

uint64_t TensorInfo::element_count() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n = detail::checked_mul(n, d, "tensor " + name + " shape " + detail::shape_string(shape));
  return n;
}

}  // namespace sbits
