// sbits_model_*: loading, releasing and describing models.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "engine/backends.h"
#include "engine/c_api/capi_common.h"
#include "formats/sbits_file.h"

using namespace sbits::capi;

namespace {

int32_t clamp_i32(uint64_t v) {
  return static_cast<int32_t>(std::min<uint64_t>(v, std::numeric_limits<int32_t>::max()));
}

// Separates "cannot open" (SBITS_ERR_IO) from "opened but wrong" (SBITS_ERR_FORMAT), which the
// reader reports alike as FormatError.
void check_readable(const char* path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st))
    throw ApiError(SBITS_ERR_IO, fmt::format("cannot open '{}': {}", path, ec ? ec.message() : "no such file"));
  if (!std::filesystem::is_regular_file(st))
    throw ApiError(SBITS_ERR_IO, fmt::format("cannot open '{}': not a regular file", path));
  std::FILE* f = std::fopen(path, "rb");
  if (!f) throw ApiError(SBITS_ERR_IO, fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::fclose(f);
}

std::unique_ptr<sbits::kernels::Backend> open_backend(const sbits_model_params& p) {
  const std::string name = p.backend ? p.backend : "auto";
  require(p.n_threads >= 0, fmt::format("n_threads must be >= 0 (0 = every core), got {}", p.n_threads));
  require(p.device >= 0, fmt::format("device must be >= 0, got {}", p.device));
  sbits::BackendOptions options;
  options.threads = p.n_threads;
  options.device = p.device;
  try {
    return sbits::make_backend(name, options);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw ApiError(SBITS_ERR_BACKEND, e.what());
  }
}

// Bytes of every tensor in the file: the denominator of the load progress. The reader only maps
// the file and checks its directory here, which is cheap next to the upload.
uint64_t tensor_bytes(const char* path) {
  const std::unique_ptr<sbits::SbitsFile> file = sbits::SbitsFile::open(path);  // must outlive the loop
  uint64_t total = 0;
  for (const sbits::TensorInfo& t : file->tensors()) total += t.size;
  return total;
}

std::shared_ptr<sbits_model> load_model(const char* path, const sbits_model_params& p) {
  check_readable(path);
  auto h = std::make_shared<sbits_model>();
  h->device_backend = open_backend(p);
  h->backend = std::make_unique<ProgressBackend>(*h->device_backend);
  if (p.progress_callback) {
    h->backend->start_progress(p.progress_callback, p.progress_user_data, tensor_bytes(path));
    h->backend->report(0.0);
  }
  sbits::ModelLoadOptions options;
  options.verify_tensors = p.verify_tensors != 0;
  h->model = sbits::Model::load(path, *h->backend, options);
  h->backend->report(1.0);
  h->backend->stop_progress();

  h->architecture = h->model->config().architecture;
  h->backend_name = h->device_backend->name();
  h->device = h->device_backend->device_description();
  h->chat_template = h->model->chat_template();
  return h;
}

}  // namespace

extern "C" {

SBITS_API sbits_model_params sbits_model_default_params(void) {
  sbits_model_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.backend = "auto";
  return p;
}

SBITS_API sbits_status sbits_model_load(const char* path, const sbits_model_params* params, sbits_model** out_model) {
  if (out_model) *out_model = nullptr;
  return static_cast<sbits_status>(guarded("sbits_model_load", SBITS_ERR_FORMAT, [&]() -> int32_t {
    require(path != nullptr, "path is NULL");
    require(out_model != nullptr, "out_model is NULL");
    const sbits_model_params p = read_params(params, sbits_model_default_params(), "sbits_model_params");
    *out_model = models().add(load_model(path, p));
    return SBITS_OK;
  }));
}

SBITS_API sbits_status sbits_model_free(sbits_model* model) {
  if (!model) return SBITS_OK;
  return static_cast<sbits_status>(guarded("sbits_model_free", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    // Sessions hold their own references: the model goes when the last of them is freed.
    if (!models().remove(model)) get_model(model);  // throws the precise error for a non-handle
    return SBITS_OK;
  }));
}

SBITS_API sbits_status sbits_model_get_info(const sbits_model* model, sbits_model_info* info) {
  return static_cast<sbits_status>(guarded("sbits_model_get_info", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_model> m = get_model(model);
    require(info != nullptr, "info is NULL");
    check_result_struct(info, "sbits_model_info");
    const sbits::ModelConfig& c = m->model->config();
    sbits_model_info v;
    std::memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    // The strings live in the model, which outlives every use the caller may make of them
    // as long as it keeps the handle (documented in the header).
    v.architecture = m->architecture.c_str();
    v.backend = m->backend_name.c_str();
    v.device = m->device.c_str();
    v.chat_template = m->chat_template.c_str();
    v.n_params = m->model->parameter_count();
    v.bits_per_weight = m->model->bits_per_weight();
    v.context_length = clamp_i32(c.context_length);
    v.vocab_size = clamp_i32(c.vocab_size);
    v.bos_token = m->model->tokenizer().bos_id();
    v.eos_token = m->model->tokenizer().eos_id();
    v.n_layers = clamp_i32(c.n_layers);
    v.embedding_dim = clamp_i32(c.dim);
    write_result(info, v);
    return SBITS_OK;
  }));
}

}  // extern "C"
