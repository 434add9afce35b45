// Pieces shared by the Hugging Face and llama2.c importers. Internal to formats/.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/import.h"
#include "formats/mapped_file.h"

namespace sbits::detail {

// A tensor of a source checkpoint, already given its .sbits name.
struct SourceTensor {
  std::string name;          // .sbits name ("blk.0.attn_q")
  std::string origin;        // for errors: "model-00001-of-00003.safetensors: model.layers.0..."
  Layout layout = Layout::f32;
  std::vector<uint64_t> shape;
  std::span<const uint8_t> bytes;
  const MappedFile* owner = nullptr;  // pages are released after copying
};

// Streams one tensor into the writer, converting to `dtype` when set and different. Refuses
// values that overflow the target type. Returns the bytes written.
uint64_t write_tensor(SbitsWriter& w, const SourceTensor& t, std::optional<Layout> dtype);

struct TokenizerData {
  std::string kind;            // "sentencepiece" or "llama2c"
  std::vector<uint8_t> bytes;
  uint64_t pieces = 0;
};
// Reads a tokenizer and recognises its kind by content; checks it has no more pieces than
// the model's vocabulary.
TokenizerData load_tokenizer(const std::string& path, uint64_t vocab_size);

// ImportOptions::chat_template -> the stored value (a known name or a file's text).
std::string resolve_chat_template(const std::string& option);

// Reads a small text file (config.json, a template) whole; throws FormatError naming it.
std::string read_small_file(const std::string& path, uint64_t max_bytes);

// "path<TAB>size<TAB>xxh64hex" for provenance.sources, hashing with read() (not mmap) so the
// pages do not stay in this process's resident set.
std::string provenance_line(const std::string& path);

// Writes general.*, the config, tokenizer.*, chat.template and provenance.* keys.
void write_model_metadata(Metadata& meta, const ModelConfig& config, const std::string& name,
                          const TokenizerData& tok, const std::string& chat_template,
                          const std::vector<std::string>& sources, const ImportOptions& options);

ImportResult import_huggingface(const std::string& dir, const std::string& dest, const ImportOptions& options);
ImportResult import_llama2c(const std::string& path, const std::string& dest, const ImportOptions& options);

}  // namespace sbits::detail
