// A Llama-family model loaded from a .sbits file onto a compute backend.
//
// Ownership: the Model owns the mapped file, the uploaded weights and the tokenizer; it keeps a
// reference to the backend, which must outlive it. Threading: immutable after load, so several
// sessions may share one Model, each on its own thread, as long as the backend's ops are
// thread-safe for distinct buffers (the CPU backend's are).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/text/tokenizer.h"
#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "kernels/backend.h"

namespace sbits {

class EngineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LayerWeights {
  std::unique_ptr<kernels::Weight> attn_norm, wq, wk, wv, wo;
  std::unique_ptr<kernels::Weight> ffn_norm, w_gate, w_up, w_down;
};

struct ModelLoadOptions {
  bool verify_tensors = false;  // hash every tensor at load
};

class Model {
 public:
  // Throws FormatError (bad file) or EngineError (a layout the backend cannot run), with the path.
  static std::unique_ptr<Model> load(const std::string& path, kernels::Backend& backend,
                                     const ModelLoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const SbitsFile& file() const { return *file_; }
  kernels::Backend& backend() const { return backend_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The chat template stored at convert time ("" when none).
  const std::string& chat_template() const { return chat_template_; }
  // Weight parameters (elements of all weight tensors) and bits per weight of the whole file's tensors.
  uint64_t parameter_count() const { return params_; }
  double bits_per_weight() const { return bpw_; }

  const kernels::Weight& embedding() const { return *tok_embd_; }
  const kernels::Weight& output_norm() const { return *output_norm_; }
  const kernels::Weight& output() const { return output_ ? *output_ : *tok_embd_; }
  const LayerWeights& layer(size_t i) const { return layers_[i]; }

 private:
  explicit Model(kernels::Backend& backend) : backend_(backend) {}
  std::unique_ptr<kernels::Weight> upload(const std::string& name);

  kernels::Backend& backend_;
  std::unique_ptr<SbitsFile> file_;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_;
  uint64_t params_ = 0;
  double bpw_ = 0.0;
  std::unique_ptr<kernels::Weight> tok_embd_, output_norm_, output_;
  std::vector<LayerWeights> layers_;
};

}  // namespace sbits
