// What every C entry point shares: the handle structs and their registry, the thread's last
// error, the exception barrier, and reading the size-tagged parameter structs.
//
// Handles are looked up in a registry before use instead of being trusted: a NULL, freed or
// made-up pointer is answered with SBITS_ERR_INVALID_HANDLE without being dereferenced (so even
// ASan sees no use-after-free), and the shared_ptr taken by the lookup keeps the object alive
// for the rest of the call if another thread frees the handle meanwhile. The magic tag in each
// struct is a second check, against memory corruption and type confusion inside the library.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "engine/c_api/progress_backend.h"
#include "engine/model.h"
#include "engine/session.h"
#include "engine/text/chat_template.h"
#include "sbits.h"

struct sbits_model {
  static constexpr uint32_t kMagic = 0x4d544253;  // "SBTM"
  uint32_t magic = kMagic;
  // Declared in dependency order so they are destroyed in reverse: model, then the front
  // backend it points to, then the device backend.
  std::unique_ptr<sbits::kernels::Backend> device_backend;
  std::unique_ptr<sbits::capi::ProgressBackend> backend;
  std::unique_ptr<sbits::Model> model;
  std::string architecture, backend_name, device, chat_template;
};

struct sbits_session {
  static constexpr uint32_t kMagic = 0x53544253;  // "SBTS"
  uint32_t magic = kMagic;
  std::shared_ptr<sbits_model> model;  // keeps the model alive after sbits_model_free
  std::unique_ptr<sbits::Session> session;
  // Set by the call using the session; a second concurrent call fails instead of racing.
  std::atomic<bool> busy{false};
  // Cancellation: sbits_session_cancel sets `cancel` only while a generation runs, so a late
  // cancel never stops the next generation. The token callback polls it.
  std::mutex cancel_mutex;
  bool generating = false;  // guarded by cancel_mutex
  std::atomic<bool> cancel{false};
};

namespace sbits::capi {

// An error with the status code the C caller sees.
class ApiError : public std::runtime_error {
 public:
  ApiError(sbits_status status, const std::string& message) : std::runtime_error(message), status(status) {}
  sbits_status status;
};

// Throws ApiError(SBITS_ERR_INVALID_ARGUMENT, message) when `ok` is false.
inline void require(bool ok, const std::string& message) {
  if (!ok) throw ApiError(SBITS_ERR_INVALID_ARGUMENT, message);
}

template <class T>
class Registry {
 public:
  T* add(std::shared_ptr<T> object) {
    T* handle = object.get();
    std::lock_guard<std::mutex> lock(mutex_);
    live_.emplace(handle, std::move(object));
    return handle;
  }
  // The live object behind `handle`, or nullptr.
  std::shared_ptr<T> find(const void* handle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(handle);
    return it == live_.end() ? nullptr : it->second;
  }
  std::shared_ptr<T> remove(const void* handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(handle);
    if (it == live_.end()) return nullptr;
    std::shared_ptr<T> object = std::move(it->second);
    live_.erase(it);
    return object;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<const void*, std::shared_ptr<T>> live_;
};

Registry<sbits_model>& models();
Registry<sbits_session>& sessions();

// The live model/session behind a handle; throws ApiError(SBITS_ERR_INVALID_HANDLE) otherwise.
std::shared_ptr<sbits_model> get_model(const sbits_model* handle);
std::shared_ptr<sbits_session> get_session(const sbits_session* handle);

// Marks a session as used by the current call for the guard's lifetime; throws
// ApiError(SBITS_ERR_BUSY) when another call already uses it.
class BusyGuard {
 public:
  explicit BusyGuard(sbits_session& s);
  ~BusyGuard() { s_.busy.store(false); }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  sbits_session& s_;
};

// Records "fn: message" as this thread's last error and returns status.
int32_t fail(const char* fn, sbits_status status, const char* message) noexcept;

// The exception barrier of every entry point: runs f and turns whatever it throws into a
// status code and a last-error message. `other` is the status for exceptions whose type does
// not say which code applies (a FormatError while loading is SBITS_ERR_FORMAT, say).
int32_t translate_current_exception(const char* fn, sbits_status other) noexcept;

template <class F>
int32_t guarded(const char* fn, sbits_status other, F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return translate_current_exception(fn, other);
  }
}

// Reads a caller's parameter struct: the first struct_size bytes are copied over `defaults`,
// so a caller built against an older, shorter struct gets defaults for the newer fields, and
// fields beyond what this library knows are ignored. NULL means the defaults. (When adding a
// field, make sure sizeof grows: a field placed in old tail padding would read garbage.)
template <class T>
T read_params(const T* user, T defaults, const char* type_name) {
  if (!user) return defaults;
  require(user->struct_size >= sizeof(size_t) + 1,
          std::string(type_name) + ".struct_size is " + std::to_string(user->struct_size) +
              ": initialize the struct with its sbits_*_default_params() function");
  std::memcpy(static_cast<void*>(&defaults), user, std::min(user->struct_size, sizeof(T)));
  defaults.struct_size = sizeof(T);
  return defaults;
}

// Checks a caller's result struct before any work is done (struct_size must cover a field).
template <class T>
void check_result_struct(const T* out, const char* type_name) {
  require(out->struct_size >= sizeof(size_t) + 1,
          std::string(type_name) + ".struct_size is " + std::to_string(out->struct_size) +
              ": set it to sizeof(" + type_name + ")");
}

// Writes the fields of `value` that fit in the caller's struct_size, leaving struct_size as is.
template <class T>
void write_result(T* out, const T& value) {
  const size_t n = std::min(out->struct_size, sizeof(T));
  std::memcpy(reinterpret_cast<char*>(out) + sizeof(size_t), reinterpret_cast<const char*>(&value) + sizeof(size_t),
              n - sizeof(size_t));
}

// The chat template named by `spec` (a built-in name or template text), or the model's own when
// spec is NULL ("plain" when the file has none). Throws std::invalid_argument for a bad spec,
// ApiError(SBITS_ERR_FORMAT) for a stored template that cannot be parsed.
ChatTemplate chat_template_for(const sbits_model& m, const char* spec);

// Copies `text` and a NUL into a caller's buffer if it fits (snprintf's convention without the
// truncation: a buffer too small is left untouched). Returns the length, or throws when it does
// not fit in int32_t.
int32_t copy_text_out(const std::string& text, char* buf, int32_t capacity);
// Checks the (pointer, capacity) pair of a caller's output buffer.
void check_out_buffer(const void* buf, int32_t capacity, const char* name);

}  // namespace sbits::capi
