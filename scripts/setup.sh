#!/usr/bin/env bash
# Set up lr0fm in ./.venv: system data package (when apt is available), PyTorch, lr0fm and its test tools.
# Safe to run again: every step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fashion-MNIST's train split (the test split ships inside lr0fm) comes from Debian's dataset package.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned so pip takes the releases already cached on disk where they are; any torch<=2.14.1 works.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
echo "lr0fm is set up: .venv/bin/lr0fm --help"
