/* chat.c: a terminal chat over the sbits C API (one line per turn, Ctrl-D to quit).
 *   cc chat.c $(pkg-config --cflags --libs sbits) -o chat && ./chat model.sbits ["system prompt"]
 * Each turn renders the whole conversation; the session recognizes the part it has already
 * computed, so only the new turn costs time. Error checks are kept to the calls that load. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbits.h"

typedef struct { char *text; size_t len; } reply_t;

static int on_token(const char *piece, size_t len, int32_t token, void *user_data) {
  reply_t *r = (reply_t *)user_data;
  (void)token;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  r->text = (char *)realloc(r->text, r->len + len + 1);
  memcpy(r->text + r->len, piece, len + 1);
  r->len += len;
  return 0;
}

int main(int argc, char **argv) {
  sbits_model *model;
  sbits_session *session;
  sbits_chat_message msgs[256];
  size_t n = 0;
  char line[4096];
  if (argc < 2) { fprintf(stderr, "usage: %s MODEL.sbits [SYSTEM]\n", argv[0]); return 2; }
  if (sbits_model_load(argv[1], NULL, &model) != SBITS_OK || sbits_session_create(model, NULL, &session) != SBITS_OK) {
    fprintf(stderr, "chat: %s\n", sbits_last_error());
    return 1;
  }
  if (argc > 2) { msgs[n].role = "system"; msgs[n++].content = strdup(argv[2]); }
  sbits_generate_params gen = sbits_generate_default_params();
  gen.chat_stops = 1; /* stop at the template's end-of-turn text ("\nUser:" for "plain") */
  while (n + 2 <= 256 && (fputs("> ", stderr), fgets(line, sizeof line, stdin))) {
    line[strcspn(line, "\n")] = '\0';
    msgs[n].role = "user"; msgs[n++].content = strdup(line);
    /* Two calls each: the first asks for the size (the snprintf convention). */
    int32_t len = sbits_apply_chat_template(model, NULL, msgs, n, 1, NULL, 0);
    char *prompt = (char *)malloc((size_t)len + 1);
    sbits_apply_chat_template(model, NULL, msgs, n, 1, prompt, len + 1);
    int32_t n_tok = sbits_tokenize(model, prompt, (size_t)len, SBITS_TOKENIZE_PARSE_SPECIAL, NULL, 0);
    int32_t *tokens = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_tok);
    sbits_tokenize(model, prompt, (size_t)len, SBITS_TOKENIZE_PARSE_SPECIAL, tokens, n_tok);
    reply_t reply = {NULL, 0};
    if (sbits_session_generate(session, tokens, n_tok, NULL, &gen, on_token, &reply, NULL) != SBITS_OK)
      fprintf(stderr, "chat: %s\n", sbits_last_error());
    putchar('\n');
    msgs[n].role = "assistant"; msgs[n++].content = reply.text ? reply.text : strdup("");
    free(tokens);
    free(prompt);
  }
  while (n > 0) free((char *)msgs[--n].content);
  sbits_session_free(session);
  sbits_model_free(model);
  return 0;
}
