/* sbits.h: the C API of libsbits, for embedding the engine in applications.
 *
 * Pure C99. Every public name starts with sbits_ / SBITS_. Link with
 * `pkg-config --cflags --libs sbits` (shared) or `pkg-config --static --cflags --libs sbits`.
 *
 * Typical use:
 *   sbits_model *m;  sbits_session *s;
 *   sbits_model_load("model.sbits", NULL, &m);       // NULL params = defaults
 *   sbits_session_create(m, NULL, &s);
 *   int32_t ids[512];
 *   int32_t n = sbits_tokenize(m, "Once", 4, SBITS_TOKENIZE_ADD_BOS, ids, 512);
 *   sbits_session_generate(s, ids, n, NULL, NULL, on_token, NULL, NULL);
 *   sbits_session_free(s);  sbits_model_free(m);
 *
 * ERRORS. No function aborts, exits or lets an exception out. Functions returning
 * sbits_status return SBITS_OK (0) or a negative SBITS_ERR_* code; functions returning int32_t
 * return a count >= 0 or a negative SBITS_ERR_* code. On every failure, sbits_last_error()
 * gives a message naming the function and the cause. NULL handles, handles that were already
 * freed and pointers that were never handles are detected (handles are looked up in a table,
 * never dereferenced before that) and fail with SBITS_ERR_INVALID_HANDLE, except that the free
 * functions accept NULL as a no-op. What cannot be detected: a freed handle whose address the
 * library has since given to a new handle, and buffers shorter than the sizes passed with them.
 *
 * OWNERSHIP. Handles are created by sbits_model_load / sbits_session_create and released by
 * sbits_model_free / sbits_session_free. A session keeps its model alive: freeing the model while
 * sessions exist only gives up the caller's reference, and the memory goes with the last
 * session. Strings returned by the library (sbits_last_error, sbits_model_info's strings,
 * callback text) belong to the library and stay valid for the lifetime stated at each of them.
 * Every buffer the library fills is provided by the caller, with the "required size" convention
 * of snprintf: the return value is the size needed, and the buffer is written only if it fits.
 *
 * THREADS. A model is immutable once loaded: any number of threads may use one model at once
 * (tokenize, apply the chat template, create sessions and generate with them). A session is used
 * by one thread at a time; a second concurrent call on the same session fails with SBITS_ERR_BUSY
 * rather than corrupting it. The exception is sbits_session_cancel, which any thread may call at
 * any time. Callbacks run on the thread that made the call.
 *
 * FORWARD COMPATIBILITY. Parameter and result structs start with `size_t struct_size`. Get
 * parameter structs from the sbits_*_default_params() functions and change the fields you need;
 * set struct_size = sizeof(the struct) in result structs you pass in. The library reads and
 * writes only the first struct_size bytes, so programs built against an older header keep
 * working with a newer library (missing fields take their defaults), and fields a library does
 * not know (a newer header) are ignored.
 */
#ifndef SBITS_H
#define SBITS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SBITS_BUILDING_LIBRARY) && defined(__GNUC__)
#define SBITS_API __attribute__((visibility("default")))
#else
#define SBITS_API
#endif

/* The version of this header. sbits_version() gives the library's. */
#define SBITS_VERSION_MAJOR 0
#define SBITS_VERSION_MINOR 1
#define SBITS_VERSION_PATCH 0

/* ---------------------------------------------------------------- status and errors */

typedef enum sbits_status {
  SBITS_OK = 0,
  SBITS_ERR_INVALID_ARGUMENT = -1, /* a NULL pointer, an out-of-range value, a bad struct_size */
  SBITS_ERR_INVALID_HANDLE = -2,   /* NULL, freed or foreign model/session handle */
  SBITS_ERR_IO = -3,               /* the file cannot be opened or read */
  SBITS_ERR_FORMAT = -4,           /* the file is corrupt, truncated or of an unsupported kind */
  SBITS_ERR_BACKEND = -5,          /* backend not built, device unavailable, or an op failed */
  SBITS_ERR_CANCELLED = -6,        /* the progress callback asked to stop a load */
  SBITS_ERR_CONTEXT_FULL = -7,     /* the prompt does not fit in the session's context */
  SBITS_ERR_BUSY = -8,             /* the session is in use by another call */
  SBITS_ERR_OUT_OF_MEMORY = -9,
  SBITS_ERR_INTERNAL = -10         /* a bug in sbits: please report the message */
} sbits_status;

/* The message of the last failed call made by this thread ("" when none has failed). Calls
 * that succeed leave it as it was. The pointer stays valid until the next failing call on this
 * thread. Thread-safe. Never returns NULL. */
SBITS_API const char *sbits_last_error(void);

/* A static name for a status code ("SBITS_ERR_FORMAT"; "unknown status" for others). */
SBITS_API const char *sbits_status_name(int status);

/* ---------------------------------------------------------------- version */

/* The library's version as MAJOR * 10000 + MINOR * 100 + PATCH, and as a static string
 * ("0.1.0"). Programs may compare it with the SBITS_VERSION_* macros of the header they were
 * built with. Never fail. */
SBITS_API int32_t sbits_version(void);
SBITS_API const char *sbits_version_string(void);

/* ---------------------------------------------------------------- models */

typedef struct sbits_model sbits_model;     /* a loaded model: weights, tokenizer, template */
typedef struct sbits_session sbits_session; /* one conversation: KV cache and its tokens */

/* Progress of a model load, from 0 to 1 (called at 0, after each tensor is placed on the
 * backend, and at 1). Return non-zero to cancel: the load then fails with SBITS_ERR_CANCELLED. */
typedef int (*sbits_progress_callback)(float progress, void *user_data);

typedef struct sbits_model_params {
  size_t struct_size;
  const char *backend;  /* "auto" (default: a GPU backend when one is built in and a device is
                           present, else "cpu"), "cpu", or "cuda" in builds with the CUDA
                           backend; others fail with SBITS_ERR_BACKEND. NULL means "auto". */
  int32_t n_threads;    /* CPU threads; 0 (default) = every core this process may use */
  int32_t device;       /* GPU index for GPU backends (default 0) */
  int32_t verify_tensors; /* non-zero: check every tensor's checksum at load (default 0) */
  sbits_progress_callback progress_callback; /* NULL (default): no progress reports */
  void *progress_user_data;
} sbits_model_params;

SBITS_API sbits_model_params sbits_model_default_params(void);

/* Loads a .sbits model. params may be NULL (defaults). On success *out_model is a new handle
 * that the caller frees with sbits_model_free. On failure *out_model is set to NULL (when
 * out_model is not NULL) and the return value says why: SBITS_ERR_IO (cannot open),
 * SBITS_ERR_FORMAT (corrupt or unsupported file; the message names what was expected and what
 * was found), SBITS_ERR_BACKEND, SBITS_ERR_CANCELLED, SBITS_ERR_INVALID_ARGUMENT,
 * SBITS_ERR_OUT_OF_MEMORY. */
SBITS_API sbits_status sbits_model_load(const char *path, const sbits_model_params *params,
                                        sbits_model **out_model);

/* Gives up the caller's reference; the model is released once no session uses it. NULL is a
 * no-op returning SBITS_OK; a handle that is not a live model returns SBITS_ERR_INVALID_HANDLE. */
SBITS_API sbits_status sbits_model_free(sbits_model *model);

typedef struct sbits_model_info {
  size_t struct_size;        /* set by the caller: sizeof(sbits_model_info) */
  /* Strings are NUL-terminated, owned by the model, and valid until it is released. */
  const char *architecture;  /* "llama" */
  const char *backend;       /* the backend in use: "cpu" */
  const char *device;        /* a description of the device, for logs */
  const char *chat_template; /* the template stored in the file; "" when it has none */
  uint64_t n_params;         /* elements of all weight tensors */
  double bits_per_weight;    /* of the whole file's tensors */
  int32_t context_length;    /* the longest context the model was trained for */
  int32_t vocab_size;
  int32_t bos_token;         /* -1 when the model has none */
  int32_t eos_token;         /* -1 when the model has none */
  int32_t n_layers;
  int32_t embedding_dim;
} sbits_model_info;

/* Fills the first info->struct_size bytes of *info. Fails with SBITS_ERR_INVALID_HANDLE or
 * SBITS_ERR_INVALID_ARGUMENT (info NULL or struct_size too small to hold any field). */
SBITS_API sbits_status sbits_model_get_info(const sbits_model *model, sbits_model_info *info);

/* ---------------------------------------------------------------- text */

#define SBITS_TOKENIZE_ADD_BOS 1u       /* prepend the BOS token (when the model has one) */
#define SBITS_TOKENIZE_PARSE_SPECIAL 2u /* "<s>", "<|im_end|>"... written in the text become
                                           their control tokens (use it for chat prompts);
                                           otherwise they are plain text */

/* Converts text_len bytes of UTF-8 text (text need not be NUL-terminated; it may be NULL when
 * text_len is 0) into token ids. Returns the number of tokens; they are written to tokens only
 * if that number is <= capacity (tokens may be NULL when capacity is 0, to ask for the size).
 * Fails with SBITS_ERR_INVALID_HANDLE or SBITS_ERR_INVALID_ARGUMENT (NULL text or tokens with a
 * non-zero size, negative capacity, unknown flags, or more than INT32_MAX tokens). */
SBITS_API int32_t sbits_tokenize(const sbits_model *model, const char *text, size_t text_len,
                                 uint32_t flags, int32_t *tokens, int32_t capacity);

/* Converts token ids into UTF-8 text the way a whole sequence decodes (control tokens vanish,
 * the first piece loses its leading space, ill-formed bytes become U+FFFD). Returns the length
 * in bytes, without the terminating NUL; text is written, NUL-terminated, only if that length
 * is < capacity. Fails with SBITS_ERR_INVALID_HANDLE or SBITS_ERR_INVALID_ARGUMENT (a token
 * outside [0, vocab_size), NULL pointers with non-zero sizes, negative sizes). */
SBITS_API int32_t sbits_detokenize(const sbits_model *model, const int32_t *tokens, int32_t n_tokens,
                                   char *text, int32_t capacity);

typedef struct sbits_chat_message {
  const char *role;    /* "system", "user" or "assistant" (NUL-terminated UTF-8) */
  const char *content; /* NUL-terminated UTF-8 */
} sbits_chat_message;

/* Renders a conversation into prompt text with a chat template, ready for
 * sbits_tokenize(..., SBITS_TOKENIZE_PARSE_SPECIAL, ...). chat_template is a template name
 * ("llama2", "chatml", "zephyr", "plain") or template text; NULL means the model's own
 * template, or "plain" when the file has none. add_generation_prompt non-zero ends the text
 * with the opening of an assistant turn. Returns the length in bytes without the NUL; text is
 * written, NUL-terminated, only if that length is < capacity (text may be NULL when capacity is
 * 0). Fails with SBITS_ERR_INVALID_HANDLE, SBITS_ERR_INVALID_ARGUMENT (NULL messages with
 * n_messages > 0, a NULL role or content, an unknown role or template) or SBITS_ERR_FORMAT (the
 * model's stored template cannot be used). */
SBITS_API int32_t sbits_apply_chat_template(const sbits_model *model, const char *chat_template,
                                            const sbits_chat_message *messages, size_t n_messages,
                                            int add_generation_prompt, char *text, int32_t capacity);

/* ---------------------------------------------------------------- sessions */

#define SBITS_KV_F16 0 /* KV cache element type: half the memory (default) */
#define SBITS_KV_F32 1

typedef struct sbits_session_params {
  size_t struct_size;
  int32_t n_ctx;   /* context length in tokens; 0 (default) = the model's. The KV cache for
                      all of it is allocated by sbits_session_create. */
  int32_t kv_type; /* SBITS_KV_F16 (default) or SBITS_KV_F32 */
  int32_t n_batch; /* prompt tokens computed per step; 0 (default) = the backend's choice:
                      512 on GPUs, 64 on the CPU (scratch memory grows with it) */
} sbits_session_params;

SBITS_API sbits_session_params sbits_session_default_params(void);

/* Creates a session over a model (params NULL = defaults). The session holds a reference to the
 * model. On failure *out_session is set to NULL (when out_session is not NULL); errors:
 * SBITS_ERR_INVALID_HANDLE, SBITS_ERR_INVALID_ARGUMENT, SBITS_ERR_BACKEND, SBITS_ERR_OUT_OF_MEMORY. */
SBITS_API sbits_status sbits_session_create(const sbits_model *model, const sbits_session_params *params,
                                            sbits_session **out_session);

/* Forgets every token of the session (the next generation starts from an empty context). */
SBITS_API sbits_status sbits_session_reset(sbits_session *session);

/* Releases the session (and the model, if this was its last user). NULL is a no-op returning
 * SBITS_OK. Fails with SBITS_ERR_INVALID_HANDLE, or SBITS_ERR_BUSY while a call is using it. */
SBITS_API sbits_status sbits_session_free(sbits_session *session);

/* The number of tokens the session holds (its cached context), or a negative error code
 * (SBITS_ERR_BUSY while another call uses the session). */
SBITS_API int32_t sbits_session_n_past(const sbits_session *session);

/* Stops the generation running on this session, from any thread: at most one more token
 * reaches the callback after this call returns (one whose delivery had already begun), and
 * sbits_session_generate returns as soon as the token being computed is done (a prompt being
 * computed is finished first), with stop reason SBITS_STOP_CANCELLED. Without a generation
 * running it does nothing: it does not cancel the next one. Safe to call from a token callback.
 * Returns SBITS_OK, or SBITS_ERR_INVALID_HANDLE. */
SBITS_API sbits_status sbits_session_cancel(sbits_session *session);

#define SBITS_SEED_RANDOM UINT64_MAX /* a seed drawn from the OS for each generation */

typedef struct sbits_sampling_params {
  size_t struct_size;
  float temperature;       /* 0.8; <= 0 = greedy */
  int32_t top_k;           /* 40; <= 0 = off */
  float top_p;             /* 0.95; >= 1 = off */
  float min_p;             /* 0.05; 0 = off */
  float repeat_penalty;    /* 1.0 = off; must be > 0 */
  int32_t repeat_last_n;   /* 64: the window of recent tokens the penalties look at */
  float presence_penalty;  /* 0 (OpenAI semantics) */
  float frequency_penalty; /* 0 (OpenAI semantics) */
  uint64_t seed;           /* SBITS_SEED_RANDOM (default) or a seed: same seed, same text */
} sbits_sampling_params;

SBITS_API sbits_sampling_params sbits_sampling_default_params(void);

typedef struct sbits_generate_params {
  size_t struct_size;
  int32_t max_tokens;  /* tokens to generate at most (default 256); < 0 = until EOS, a stop
                          string or a full context; 0 = only compute the prompt */
  const char *const *stop_strings; /* generation ends before any of these texts; the stop text */
  size_t n_stop_strings;           /* is not passed to the callback (default none) */
  int32_t chat_stops;  /* non-zero: also stop at the end-of-turn texts of chat_template */
  const char *chat_template; /* as in sbits_apply_chat_template (NULL = the model's) */
} sbits_generate_params;

SBITS_API sbits_generate_params sbits_generate_default_params(void);

/* Called for each generated token, on the generating thread. text (NUL-terminated, text_len
 * bytes, valid only during the call) is complete UTF-8: it is empty while a character is split
 * across tokens, and with stop strings, text that might begin one is held back and passed with
 * a later token. token is the token's id, or -1 for a last call that carries text held back at
 * the end. Return 0 to continue, non-zero to stop (SBITS_STOP_CALLBACK). The callback may call
 * sbits_session_cancel and use other handles, but no other function on this session. */
typedef int (*sbits_token_callback)(const char *text, size_t text_len, int32_t token, void *user_data);

typedef enum sbits_stop_reason {
  SBITS_STOP_EOS = 0,          /* the model ended its text */
  SBITS_STOP_LENGTH = 1,       /* max_tokens reached */
  SBITS_STOP_CONTEXT_FULL = 2, /* no room left in the session's context */
  SBITS_STOP_STRING = 3,       /* a stop string was found */
  SBITS_STOP_CALLBACK = 4,     /* the token callback returned non-zero */
  SBITS_STOP_CANCELLED = 5     /* sbits_session_cancel */
} sbits_stop_reason;

typedef struct sbits_generate_result {
  size_t struct_size;        /* set by the caller: sizeof(sbits_generate_result) */
  int32_t stop_reason;       /* an sbits_stop_reason */
  int32_t prompt_tokens;     /* tokens in the prompt */
  int32_t cached_tokens;     /* of them, reused from the session's context (not recomputed) */
  int32_t generated_tokens;  /* tokens passed to the callback (or that would have been) */
  double prompt_seconds;     /* computing the prompt */
  double decode_seconds;     /* the generated tokens after the first */
  double ttft_seconds;       /* from the call to the first token's text */
} sbits_generate_result;

/* Generates a continuation of the prompt tokens (1 <= n_prompt; ids from sbits_tokenize).
 *
 * The session keeps the tokens it has computed (the prompt and the generated tokens). When a
 * prompt begins with them (a conversation re-rendered with one more turn, say), that part is
 * not computed again: pass the whole conversation every time. Otherwise the context starts
 * over from the first token that differs.
 *
 * sampling, params and result may be NULL (defaults; no result); callback may be NULL.
 * Returns SBITS_OK when generation ran, whatever stopped it (see result->stop_reason), even if
 * it was cancelled. Errors: SBITS_ERR_INVALID_HANDLE, SBITS_ERR_INVALID_ARGUMENT (empty prompt,
 * a token outside the vocabulary, bad sampling values, bad struct_size), SBITS_ERR_CONTEXT_FULL
 * (the prompt does not fit in n_ctx), SBITS_ERR_BUSY, SBITS_ERR_BACKEND, SBITS_ERR_OUT_OF_MEMORY.
 * After an error the session is still usable. */
SBITS_API sbits_status sbits_session_generate(sbits_session *session, const int32_t *prompt, int32_t n_prompt,
                                              const sbits_sampling_params *sampling,
                                              const sbits_generate_params *params, sbits_token_callback callback,
                                              void *user_data, sbits_generate_result *result);

#ifdef __cplusplus
}
#endif

#endif /* SBITS_H */
