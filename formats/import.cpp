// Importer entry points and the pieces both importers share (import_common.h).
#include "formats/import.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "formats/dtype_convert.h"
#include "formats/import_common.h"
#include "formats/sbits_layout.h"

namespace sbits {
namespace fs = std::filesystem;

const char* source_kind_name(SourceKind kind) {
  return kind == SourceKind::huggingface ? "Hugging Face" : "llama2.c";
}

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = {"llama2", "chatml", "zephyr", "plain"};
  return names;
}

Layout parse_float_dtype(const std::string& name) {
  if (name == "bf16") return Layout::bf16;
  if (name == "f16") return Layout::f16;
  if (name == "f32") return Layout::f32;
  throw FormatError("dtype \"" + name + "\": expected one of bf16, f16, f32");
}

SourceKind detect_source(const std::string& src) {
  std::error_code ec;
  auto st = fs::status(src, ec);
  if (ec || !fs::exists(st)) throw FormatError(src + ": no such file or directory");
  if (fs::is_directory(st)) return SourceKind::huggingface;
  if (!fs::is_regular_file(st)) throw FormatError(src + ": not a regular file or directory");
  char head[8] = {};
  std::ifstream in(src, std::ios::binary);
  in.read(head, sizeof head);
  if (std::memcmp(head, detail::kMagic, 8) == 0) throw FormatError(src + ": is already a .sbits file");
  if (std::memcmp(head, "GGUF", 4) == 0) {
    throw FormatError(src + ": GGUF files are not supported; convert the original Hugging Face or llama2.c checkpoint");
  }
  if (fs::path(src).extension() == ".safetensors") {
    throw FormatError(src + ": a lone .safetensors file; pass the Hugging Face directory that holds it and config.json");
  }
  return SourceKind::llama2c;
}

ImportResult import_model(const std::string& src, const std::string& dest, const ImportOptions& options) {
  if (options.dtype && !is_float_layout(*options.dtype)) {
    throw FormatError("dtype: expected bf16, f16 or f32, found layout id " + std::to_string(static_cast<uint32_t>(*options.dtype)));
  }
  // Library errors from the JSON parser or the filesystem become FormatErrors too, so callers
  // need to catch one type.
  try {
    return detect_source(src) == SourceKind::huggingface ? detail::import_huggingface(src, dest, options)
                                                         : detail::import_llama2c(src, dest, options);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(src + ": unexpected JSON content: " + e.what());
  } catch (const fs::filesystem_error& e) {
    throw FormatError(src + ": " + e.what());
  }
}

namespace detail {

uint64_t write_tensor(SbitsWriter& w, const SourceTensor& t, std::optional<Layout> dtype) {
  const Layout to = dtype.value_or(t.layout);
  uint64_t count = 1;
  for (uint64_t d : t.shape) count *= d;  // matched against the expected shape by the caller
  const uint64_t out_bytes = plain_layout_bytes(to, count);
  const uint32_t id = static_cast<uint32_t>(to);
  if (to == t.layout) {
    w.add_tensor(t.name, id, 1, t.shape, t.bytes);
  } else {
    // Convert in chunks so memory stays bounded whatever the tensor's size.
    constexpr uint64_t kChunk = 1u << 20;  // elements
    const uint64_t in_elem = plain_layout_bytes(t.layout, 1), out_elem = plain_layout_bytes(to, 1);
    w.add_tensor_stream(t.name, id, 1, t.shape, out_bytes, [&](const SbitsWriter::TensorSink& sink) {
      std::vector<uint8_t> buf(std::min(count, kChunk) * out_elem);
      ConvertStats stats;
      for (uint64_t i = 0; i < count; i += kChunk) {
        uint64_t n = std::min(kChunk, count - i);
        convert_floats(t.layout, to, t.bytes.data() + i * in_elem, buf.data(), n, &stats);
        if (stats.overflows) {
          char m[32];
          std::snprintf(m, sizeof m, "%g", stats.max_abs);
          throw FormatError(t.origin + ": " + std::to_string(stats.overflows) + " values exceed the " +
                            layout_name(id) + " range (largest |x| = " + m + "); use --dtype bf16 or f32");
        }
        sink({buf.data(), n * out_elem});
      }
    });
  }
  if (t.owner) t.owner->release(t.bytes.data(), t.bytes.size());
  return out_bytes;
}

std::string read_small_file(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) throw FormatError(path + ": cannot read: " + ec.message());
  if (size > max_bytes) {
    throw FormatError(path + ": " + std::to_string(size) + " bytes, expected at most " + std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  std::string s(size, '\0');
  if (!in.read(s.data(), static_cast<std::streamsize>(size))) throw FormatError(path + ": read failed");
  return s;
}

std::string resolve_chat_template(const std::string& option) {
  for (const std::string& n : chat_template_names()) {
    if (option == n) return n;
  }
  std::error_code ec;
  if (!fs::is_regular_file(option, ec)) {
    std::string names;
    for (const std::string& n : chat_template_names()) names += (names.empty() ? "" : ", ") + n;
    throw FormatError("chat template \"" + option + "\": not a known name (" + names + ") nor a readable file");
  }
  std::string text = read_small_file(option, 1u << 20);
  if (!valid_utf8({reinterpret_cast<const uint8_t*>(text.data()), text.size()})) {
    throw FormatError(option + ": chat template is not valid UTF-8");
  }
  return text;
}

std::string provenance_line(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FormatError(path + ": cannot open: " + std::strerror(errno));
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::vector<char> buf(1u << 20);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      XXH64_freeState(st);
      throw FormatError(path + ": read failed: " + std::strerror(e));
    }
    if (n == 0) break;
    XXH64_update(st, buf.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  ::close(fd);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH64_digest(st)));
  XXH64_freeState(st);
  // Keep the metadata valid UTF-8 whatever bytes the path holds.
  std::string p = path;
  if (!valid_utf8({reinterpret_cast<const uint8_t*>(p.data()), p.size()})) {
    for (char& c : p) c = (static_cast<unsigned char>(c) < 0x80) ? c : '?';
  }
  return p + "\t" + std::to_string(total) + "\t" + hex;
}

void write_model_metadata(Metadata& meta, const ModelConfig& config, const std::string& name,
                          const TokenizerData& tok, const std::string& chat_template,
                          const std::vector<std::string>& sources, const ImportOptions& options) {
  config.to_metadata(meta);
  std::string n = name;
  if (!valid_utf8({reinterpret_cast<const uint8_t*>(n.data()), n.size()})) n = "model";
  meta.set("general.name", n);
  meta.set("tokenizer.kind", tok.kind);
  meta.set("tokenizer.model", tok.bytes);
  meta.set("chat.template", chat_template);
  meta.set("provenance.tool", std::string("sbits-convert 0.1.0"));
  std::string lines;
  for (const std::string& s : sources) lines += provenance_line(s) + "\n";
  meta.set("provenance.sources", lines);
  meta.set("provenance.converter.dtype",
           std::string(options.dtype ? layout_name(static_cast<uint32_t>(*options.dtype)) : "source"));
}

}  // namespace detail
}  // namespace sbits
