/* A C program over sbits.h, compiled as strict C99 (-std=c99 -Wall -Wextra -Werror -pedantic) so
 * that the header is proven to be C: greedy completion of PROMPT for N tokens, printed the way
 * sbits-run prints it (the text, then one newline), so that stories260K with "" and 200 tokens
 * gives llama2.c's golden text. Also reports load progress on stderr.
 *   c_golden MODEL.sbits N [PROMPT]                                  exit 0 on success */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbits.h"
#include "sbits.h" /* twice: the include guard works */

static int on_progress(float progress, void *user_data) {
  int *calls = (int *)user_data;
  ++*calls;
  if (progress < 0.0f || progress > 1.0f) fprintf(stderr, "c_golden: progress %f out of range\n", (double)progress);
  return 0;
}

static int on_token(const char *text, size_t len, int32_t token, void *user_data) {
  (void)token;
  (void)user_data;
  fwrite(text, 1, len, stdout);
  return 0;
}

static int fail(const char *what) {
  fprintf(stderr, "c_golden: %s: %s\n", what, sbits_last_error());
  return 1;
}

int main(int argc, char **argv) {
  sbits_model *model = NULL;
  sbits_session *session = NULL;
  sbits_model_params mp = sbits_model_default_params();
  sbits_sampling_params sp = sbits_sampling_default_params();
  sbits_generate_params gp = sbits_generate_default_params();
  sbits_generate_result result;
  sbits_model_info info;
  int progress_calls = 0;
  const char *prompt = argc > 3 ? argv[3] : "";
  int32_t tokens[1024];
  int32_t n;

  if (argc < 3) {
    fprintf(stderr, "usage: c_golden MODEL.sbits N [PROMPT]\n");
    return 2;
  }
  if (sbits_version() != SBITS_VERSION_MAJOR * 10000 + SBITS_VERSION_MINOR * 100 + SBITS_VERSION_PATCH) {
    fprintf(stderr, "c_golden: header %d.%d.%d, library %s\n", SBITS_VERSION_MAJOR, SBITS_VERSION_MINOR,
            SBITS_VERSION_PATCH, sbits_version_string());
    return 1;
  }
  mp.progress_callback = on_progress;
  mp.progress_user_data = &progress_calls;
  if (sbits_model_load(argv[1], &mp, &model) != SBITS_OK) return fail("load");
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  if (sbits_model_get_info(model, &info) != SBITS_OK) return fail("info");
  fprintf(stderr, "c_golden: %s, %d layers, %.2f bpw, %d progress reports, backend %s\n", info.architecture,
          info.n_layers, info.bits_per_weight, progress_calls, info.backend);
  if (sbits_session_create(model, NULL, &session) != SBITS_OK) return fail("session");

  n = sbits_tokenize(model, prompt, strlen(prompt), SBITS_TOKENIZE_ADD_BOS, tokens, 1024);
  if (n < 0) return fail("tokenize");
  if (n > 1024) {
    fprintf(stderr, "c_golden: prompt too long\n");
    return 1;
  }
  sp.temperature = 0.0f;
  gp.max_tokens = atoi(argv[2]);
  memset(&result, 0, sizeof result);
  result.struct_size = sizeof result;
  if (sbits_session_generate(session, tokens, n, &sp, &gp, on_token, NULL, &result) != SBITS_OK)
    return fail("generate");
  putchar('\n');
  fprintf(stderr, "c_golden: %d tokens, stop reason %d\n", result.generated_tokens, result.stop_reason);
  if (sbits_session_free(session) != SBITS_OK || sbits_model_free(model) != SBITS_OK) return fail("free");
  return 0;
}
