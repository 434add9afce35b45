#!/usr/bin/env bash
# Converts the shared test models once for the engine tests (ctest fixture engine_convert_models).
set -euo pipefail
data=${SBITS_DATA:-$SBITS_DEFAULT_DATA}
mkdir -p "$SBITS_TEST_MODELS"
"$SBITS_CONVERT" "$data/models/stories260K.bin" --tokenizer "$data/models/tok512.model" \
  -o "$SBITS_TEST_MODELS/stories260K.sbits"
"$SBITS_CONVERT" "$data/models/tech-llama-58m" -o "$SBITS_TEST_MODELS/tech-llama-58m-bf16.sbits"
