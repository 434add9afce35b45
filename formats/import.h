// Importers: Hugging Face Llama/Mistral checkpoints and llama2.c .bin files to .sbits
// (SBITS.md "Importers"). Used by sbits-convert; usable from any program.
//
// Errors: every failure throws sbits::FormatError with a one-line message naming the file and
// what was found ("config.json: architectures = ["GPT2LMHeadModel"]; supported: ..."). The
// destination is written atomically by SbitsWriter: on failure nothing is left behind.
// Memory: sources are memory-mapped and streamed; at most one conversion chunk (4 MiB) of
// tensor data is held in memory besides the tokenizer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/sbits_file.h"

namespace sbits {

struct ImportOptions {
  // Tokenizer file: a SentencePiece .model or a llama2.c tokenizer.bin (told apart by content).
  // Empty: Hugging Face uses <dir>/tokenizer.model; llama2.c requires it.
  std::string tokenizer_path;
  // Convert every float tensor to this layout (f32, f16 or bf16). Empty: keep the source dtype.
  std::optional<Layout> dtype;
  // A template name (see chat_template_names()) or the path of a file holding a template's text.
  // Empty: the source's own (tokenizer_config.json "chat_template"), else "plain".
  std::string chat_template;
  // general.name. Empty: the source's base name ("tech-llama-58m", "stories260K").
  std::string name;
};

enum class SourceKind { huggingface, llama2c };
const char* source_kind_name(SourceKind kind);  // "Hugging Face", "llama2.c"

// A directory is a Hugging Face checkpoint; a file is a llama2.c .bin. Throws FormatError for
// anything recognisably else (.sbits, GGUF, a lone .safetensors file, missing path).
SourceKind detect_source(const std::string& src);

struct ImportResult {
  SourceKind kind = SourceKind::huggingface;
  ModelConfig config;
  uint64_t tensor_count = 0;
  uint64_t parameter_count = 0;  // elements of all tensors written
  uint64_t tensor_bytes = 0;
  std::string tokenizer_kind;    // "sentencepiece" or "llama2c"
};

// Converts `src` into the .sbits file `dest`. Refuses to write over any of its inputs.
ImportResult import_model(const std::string& src, const std::string& dest, const ImportOptions& options = {});

// The chat template names the engine knows: llama2, chatml, zephyr, plain.
const std::vector<std::string>& chat_template_names();

// "bf16" / "f16" / "f32" -> Layout; throws FormatError listing the accepted names.
Layout parse_float_dtype(const std::string& name);

}  // namespace sbits
