#include "engine/c_api/capi_common.h"

#include <fmt/format.h>

#include <limits>
#include <new>

#include "engine/text/tokenizer.h"
#include "formats/sbits_file.h"
#include "kernels/backend.h"

namespace sbits::capi {
namespace {

// Never destroyed: a process that exits with live handles (or with a thread still generating)
// must not have the registry torn down under it by static destructors.
template <class T>
Registry<T>& leaked_registry() {
  static auto* registry = new Registry<T>();
  return *registry;
}

thread_local std::string t_last_error;

}  // namespace

Registry<sbits_model>& models() { return leaked_registry<sbits_model>(); }
Registry<sbits_session>& sessions() { return leaked_registry<sbits_session>(); }

std::shared_ptr<sbits_model> get_model(const sbits_model* handle) {
  if (!handle) throw ApiError(SBITS_ERR_INVALID_HANDLE, "the model handle is NULL");
  std::shared_ptr<sbits_model> m = models().find(handle);
  if (!m)
    throw ApiError(SBITS_ERR_INVALID_HANDLE,
                   fmt::format("{} is not a live model handle (freed, or not from sbits_model_load)",
                               static_cast<const void*>(handle)));
  if (m->magic != sbits_model::kMagic)
    throw ApiError(SBITS_ERR_INTERNAL, "the model's memory was overwritten (magic tag changed)");
  return m;
}

std::shared_ptr<sbits_session> get_session(const sbits_session* handle) {
  if (!handle) throw ApiError(SBITS_ERR_INVALID_HANDLE, "the session handle is NULL");
  std::shared_ptr<sbits_session> s = sessions().find(handle);
  if (!s)
    throw ApiError(SBITS_ERR_INVALID_HANDLE,
                   fmt::format("{} is not a live session handle (freed, or not from sbits_session_create)",
                               static_cast<const void*>(handle)));
  if (s->magic != sbits_session::kMagic)
    throw ApiError(SBITS_ERR_INTERNAL, "the session's memory was overwritten (magic tag changed)");
  return s;
}

BusyGuard::BusyGuard(sbits_session& s) : s_(s) {
  if (s.busy.exchange(true))
    throw ApiError(SBITS_ERR_BUSY,
                   "the session is in use by another call (a session serves one thread at a time; only "
                   "sbits_session_cancel may be called while it generates)");
}

int32_t fail(const char* fn, sbits_status status, const char* message) noexcept {
  try {
    t_last_error = fmt::format("{}: {}", fn, message);
  } catch (...) {
    // Out of memory while formatting: keep whatever message was there rather than throw.
  }
  return status;
}

int32_t translate_current_exception(const char* fn, sbits_status other) noexcept {
  try {
    throw;
  } catch (const ApiError& e) {
    return fail(fn, e.status, e.what());
  } catch (const LoadCancelled& e) {
    return fail(fn, SBITS_ERR_CANCELLED, e.what());
  } catch (const std::bad_alloc&) {
    return fail(fn, SBITS_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const kernels::KernelError& e) {
    return fail(fn, SBITS_ERR_BACKEND, e.what());
  } catch (const std::invalid_argument& e) {
    return fail(fn, SBITS_ERR_INVALID_ARGUMENT, e.what());
  } catch (const std::exception& e) {
    return fail(fn, other, e.what());
  } catch (...) {
    return fail(fn, SBITS_ERR_INTERNAL, "unknown exception");
  }
}

void check_out_buffer(const void* buf, int32_t capacity, const char* name) {
  require(capacity >= 0, fmt::format("{} capacity is negative ({})", name, capacity));
  require(buf || capacity == 0, fmt::format("{} is NULL with capacity {}", name, capacity));
}

int32_t copy_text_out(const std::string& text, char* buf, int32_t capacity) {
  require(text.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()),
          fmt::format("the text is {} bytes, more than an int32_t length can say", text.size()));
  const auto n = static_cast<int32_t>(text.size());
  if (n < capacity) {
    std::memcpy(buf, text.data(), text.size());
    buf[n] = '\0';
  }
  return n;
}

}  // namespace sbits::capi

using namespace sbits::capi;

extern "C" {

SBITS_API const char* sbits_last_error(void) { return t_last_error.c_str(); }

SBITS_API const char* sbits_status_name(int status) {
  switch (status) {
    case SBITS_OK: return "SBITS_OK";
    case SBITS_ERR_INVALID_ARGUMENT: return "SBITS_ERR_INVALID_ARGUMENT";
    case SBITS_ERR_INVALID_HANDLE: return "SBITS_ERR_INVALID_HANDLE";
    case SBITS_ERR_IO: return "SBITS_ERR_IO";
    case SBITS_ERR_FORMAT: return "SBITS_ERR_FORMAT";
    case SBITS_ERR_BACKEND: return "SBITS_ERR_BACKEND";
    case SBITS_ERR_CANCELLED: return "SBITS_ERR_CANCELLED";
    case SBITS_ERR_CONTEXT_FULL: return "SBITS_ERR_CONTEXT_FULL";
    case SBITS_ERR_BUSY: return "SBITS_ERR_BUSY";
    case SBITS_ERR_OUT_OF_MEMORY: return "SBITS_ERR_OUT_OF_MEMORY";
    case SBITS_ERR_INTERNAL: return "SBITS_ERR_INTERNAL";
    default: return "unknown status";
  }
}

#define SBITS_STR2(x) #x
#define SBITS_STR(x) SBITS_STR2(x)

SBITS_API int32_t sbits_version(void) {
  return SBITS_VERSION_MAJOR * 10000 + SBITS_VERSION_MINOR * 100 + SBITS_VERSION_PATCH;
}

SBITS_API const char* sbits_version_string(void) {
  return SBITS_STR(SBITS_VERSION_MAJOR) "." SBITS_STR(SBITS_VERSION_MINOR) "." SBITS_STR(SBITS_VERSION_PATCH);
}

}  // extern "C"
