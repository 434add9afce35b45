#!/usr/bin/env python3
"""Streams a completion from a .sbits model through libsbits with ctypes (no other packages).

    python3 stream.py model.sbits -p "Once upon a time" -n 100 [--temp 0] [--lib path/to/libsbits.so]

The library is found from --lib, else $SBITS_LIBRARY, else the system's libsbits.so.0. Text goes to
stdout as each token arrives (followed by one newline at the end); statistics go to stderr.
Ctrl-C stops the generation cleanly (the callback returns non-zero).
"""
import argparse
import ctypes
import ctypes.util
import os
import signal
import sys

c_int32_p = ctypes.POINTER(ctypes.c_int32)


# The structs of sbits.h, field for field (ctypes uses the C ABI's alignment).
class ModelParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_char_p), ("n_threads", ctypes.c_int32),
                ("device", ctypes.c_int32), ("verify_tensors", ctypes.c_int32),
                ("progress_callback", ctypes.c_void_p), ("progress_user_data", ctypes.c_void_p)]


class SamplingParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("temperature", ctypes.c_float), ("top_k", ctypes.c_int32),
                ("top_p", ctypes.c_float), ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float),
                ("repeat_last_n", ctypes.c_int32), ("presence_penalty", ctypes.c_float),
                ("frequency_penalty", ctypes.c_float), ("seed", ctypes.c_uint64)]


class GenerateParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("max_tokens", ctypes.c_int32),
                ("stop_strings", ctypes.POINTER(ctypes.c_char_p)), ("n_stop_strings", ctypes.c_size_t),
                ("chat_stops", ctypes.c_int32), ("chat_template", ctypes.c_char_p)]


class GenerateResult(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("stop_reason", ctypes.c_int32), ("prompt_tokens", ctypes.c_int32),
                ("cached_tokens", ctypes.c_int32), ("generated_tokens", ctypes.c_int32),
                ("prompt_seconds", ctypes.c_double), ("decode_seconds", ctypes.c_double),
                ("ttft_seconds", ctypes.c_double)]


TOKEN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_int32,
                                  ctypes.c_void_p)
TOKENIZE_ADD_BOS = 1
STOP_REASONS = ["eos", "length", "context_full", "stop string", "callback", "cancelled"]


def load_library(path):
    path = path or os.environ.get("SBITS_LIBRARY") or ctypes.util.find_library("sbits") or "libsbits.so.0"
    lib = ctypes.CDLL(path)
    P = ctypes.POINTER
    lib.sbits_last_error.restype = ctypes.c_char_p
    lib.sbits_version_string.restype = ctypes.c_char_p
    lib.sbits_model_default_params.restype = ModelParams
    lib.sbits_model_load.argtypes = [ctypes.c_char_p, P(ModelParams), P(ctypes.c_void_p)]
    lib.sbits_model_free.argtypes = [ctypes.c_void_p]
    lib.sbits_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32, c_int32_p,
                                   ctypes.c_int32]
    lib.sbits_tokenize.restype = ctypes.c_int32
    lib.sbits_session_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, P(ctypes.c_void_p)]
    lib.sbits_session_free.argtypes = [ctypes.c_void_p]
    lib.sbits_sampling_default_params.restype = SamplingParams
    lib.sbits_generate_default_params.restype = GenerateParams
    lib.sbits_session_generate.argtypes = [ctypes.c_void_p, c_int32_p, ctypes.c_int32, P(SamplingParams),
                                           P(GenerateParams), TOKEN_CALLBACK, ctypes.c_void_p, P(GenerateResult)]
    return lib


def check(lib, status, what):
    if status < 0:
        sys.exit(f"stream.py: {what} failed: {lib.sbits_last_error().decode(errors='replace')}")
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("-p", "--prompt", default="")
    ap.add_argument("-n", "--n-predict", type=int, default=256)
    ap.add_argument("--temp", type=float, default=None, help="temperature (default: the library's)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--lib", default=None, help="path of libsbits.so")
    args = ap.parse_args()

    lib = load_library(args.lib)
    model, session = ctypes.c_void_p(), ctypes.c_void_p()
    params = lib.sbits_model_default_params()
    check(lib, lib.sbits_model_load(args.model.encode(), ctypes.byref(params), ctypes.byref(model)), "loading")
    check(lib, lib.sbits_session_create(model, None, ctypes.byref(session)), "creating a session")

    text = args.prompt.encode()
    n = check(lib, lib.sbits_tokenize(model, text, len(text), TOKENIZE_ADD_BOS, None, 0), "tokenizing")
    tokens = (ctypes.c_int32 * n)()
    check(lib, lib.sbits_tokenize(model, text, len(text), TOKENIZE_ADD_BOS, tokens, n), "tokenizing")

    sampling = lib.sbits_sampling_default_params()
    if args.temp is not None:
        sampling.temperature = args.temp
    if args.seed is not None:
        sampling.seed = args.seed
    gen = lib.sbits_generate_default_params()
    gen.max_tokens = args.n_predict

    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))

    @TOKEN_CALLBACK
    def on_token(piece, length, token, user_data):
        sys.stdout.buffer.write(ctypes.string_at(piece, length))
        sys.stdout.flush()
        return 1 if interrupted else 0

    result = GenerateResult(struct_size=ctypes.sizeof(GenerateResult))
    check(lib, lib.sbits_session_generate(session, tokens, n, ctypes.byref(sampling), ctypes.byref(gen), on_token,
                                          None, ctypes.byref(result)), "generating")
    sys.stdout.write("\n")
    sys.stdout.flush()
    rate = (result.generated_tokens - 1) / result.decode_seconds if result.decode_seconds > 0 else 0.0
    print(f"[stream.py] libsbits {lib.sbits_version_string().decode()} | {result.generated_tokens} tokens, "
          f"{rate:.1f} tok/s | stop: {STOP_REASONS[result.stop_reason]}", file=sys.stderr)
    lib.sbits_session_free(session)
    lib.sbits_model_free(model)


if __name__ == "__main__":
    main()
