#include "engine/model.h"

#include <fmt/format.h>

#include "formats/tiled_layout.h"
#include "kernels/quant/tiled.h"

namespace sbits {
namespace {

kernels::WeightType weight_type_for(const TensorInfo& t, const std::string& path) {
  switch (static_cast<Layout>(t.layout)) {
    case Layout::f32: return kernels::WeightType::f32;
    case Layout::f16: return kernels::WeightType::f16;
    case Layout::bf16: return kernels::WeightType::bf16;
    default: break;
  }
  if (t.layout == kTiledLayoutId) return kernels::WeightType::tiled;
  const char* name = layout_name(t.layout);
  throw EngineError(fmt::format("{}: tensor {} has layout {} which the engine cannot run as a weight "
                                "(expected f32, f16, bf16 or tiled)",
                                path, t.name, name ? name : std::to_string(t.layout)));
}

}  // namespace

std::unique_ptr<kernels::Weight> Model::upload(const std::string& name) {
  const TensorInfo& t = file_->get(name);
  kernels::HostWeight hw;
  hw.type = weight_type_for(t, file_->path());
  hw.rows = t.shape.size() == 1 ? 1 : static_cast<int64_t>(t.shape[0]);
  hw.cols = static_cast<int64_t>(t.shape.back());
  auto bytes = file_->bytes(t);
  hw.data = bytes.data();
  hw.bytes = bytes.size();
  if (hw.type != kernels::WeightType::tiled) return backend_.upload(hw);
  // The backend copies the tile table and offsets during upload, so they may die after it.
  const TiledTensor tt = parse_tiled(t, bytes, file_->path() + ": ");
  kernels::quant::TiledDesc d;
  d.rows = hw.rows;
  d.cols = hw.cols;
  d.tile_rows = static_cast<int32_t>(tt.params.tile_rows);
  d.tile_cols = static_cast<int32_t>(tt.params.tile_cols);
  d.group = static_cast<int32_t>(tt.params.group);
  d.tiles_r = static_cast<int64_t>(tt.grid.tiles_r);
  d.tiles_c = static_cast<int64_t>(tt.grid.tiles_c);
  d.bits = tt.bits.data();
  d.offsets = tt.offsets.data();
  d.data = bytes.data();
  hw.tiled = &d;
  return backend_.upload(hw);
}

std::unique_ptr<Model> Model::load(const std::string& path, kernels::Backend& backend,
                                   const ModelLoadOptions& options) {
  std::unique_ptr<Model> m(new Model(backend));
  OpenOptions open_options;
  open_options.verify_tensors = options.verify_tensors;
  m->file_ = SbitsFile::open(path, open_options);
  const Metadata& meta = m->file_->metadata();
  m->config_ = ModelConfig::from_metadata(meta);
  validate_model_tensors(*m->file_, m->config_);

  m->tokenizer_ = Tokenizer::create(meta.get_string("tokenizer.kind"), meta.get_bytes("tokenizer.model"),
                                    static_cast<int32_t>(m->config_.bos_id),
                                    static_cast<int32_t>(m->config_.eos_id));
  if (static_cast<uint64_t>(m->tokenizer_->vocab_size()) != m->config_.vocab_size)
    throw EngineError(fmt::format("{}: tokenizer has {} tokens, llama.vocab_size says {}", path,
                                  m->tokenizer_->vocab_size(), m->config_.vocab_size));
  if (meta.has("chat.template")) m->chat_template_ = meta.get_string("chat.template");

  uint64_t tensor_bytes = 0;
  for (const TensorInfo& t : m->file_->tensors()) {
    m->params_ += t.element_count();
    tensor_bytes += t.size;
  }
  m->bpw_ = m->params_ ? static_cast<double>(tensor_bytes) * 8.0 / static_cast<double>(m->params_) : 0.0;

  m->tok_embd_ = m->upload(tensor_name_embedding());
  m->output_norm_ = m->upload(tensor_name_output_norm());
  if (!m->config_.tied_embeddings) m->output_ = m->upload(tensor_name_output());
  m->layers_.resize(m->config_.n_layers);
  for (uint64_t i = 0; i < m->config_.n_layers; ++i) {
    LayerWeights& l = m->layers_[i];
    auto up = [&](const char* suffix) { return m->upload(tensor_name_layer(i, suffix)); };
    l.attn_norm = up("attn_norm");
    l.wq = up("attn_q");
    l.wk = up("attn_k");
    l.wv = up("attn_v");
    l.wo = up("attn_output");
    l.ffn_norm = up("ffn_norm");
    l.w_gate = up("ffn_gate");
    l.w_up = up("ffn_up");
    l.w_down = up("ffn_down");
  }
  return m;
}

}  // namespace sbits
