# Shared by scripts/demo and scripts/test: install what is missing, configure, build.
# Sourced, not run.

SBITS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SBITS_DATA=${SBITS_DATA:-$SBITS_ROOT/../shared/data}
export SBITS_DATA

# Debian packages the build and the tests need. clang is for the libFuzzer target, nodejs and
# npm for the server's OpenAI-client test, mesa-vulkan-drivers for Vulkan tests on llvmpipe
# (vulkan-validationlayers: the tests run under VK_LAYER_KHRONOS_validation and fail on any
# error it reports).
SBITS_PACKAGES=(build-essential cmake pkg-config git clang
  libfmt-dev libxxhash-dev libsentencepiece-dev doctest-dev
  nlohmann-json3-dev libcpp-httplib-dev
  libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers)

sbits_log() { printf '\033[1m[sbits]\033[0m %s\n' "$*" >&2; }

sbits_install_deps() {
  local missing=() p
  for p in "${SBITS_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  sbits_log "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      sbits_log "error: need root or sudo to install: ${missing[*]}"
      sbits_log "install them by hand (apt-get install ${missing[*]}) and run this again"
      exit 1
    fi
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# sbits_build DIR [cmake args...]: configure once, then build incrementally on all cores
# (only the targets named in $SBITS_TARGETS, when set).
sbits_build() {
  local dir=$1; shift
  local gen=()
  command -v ninja >/dev/null 2>&1 && [ ! -f "$SBITS_ROOT/$dir/Makefile" ] && gen=(-G Ninja)
  if [ ! -f "$SBITS_ROOT/$dir/CMakeCache.txt" ]; then
    cmake -S "$SBITS_ROOT" -B "$SBITS_ROOT/$dir" "${gen[@]}" "$@"
  else
    cmake "$SBITS_ROOT/$dir" "$@" >/dev/null
  fi
  local targets=()
  [ -n "${SBITS_TARGETS:-}" ] && targets=(--target $SBITS_TARGETS)
  cmake --build "$SBITS_ROOT/$dir" -j "$(nproc)" "${targets[@]}"
}

sbits_require_data() {
  if [ ! -d "$SBITS_DATA/models" ]; then
    sbits_log "error: test data not found at $SBITS_DATA (expected ../shared/data beside the repository, or set SBITS_DATA)"
    exit 1
  fi
}
