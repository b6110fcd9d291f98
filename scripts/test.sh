#!/usr/bin/env bash
# Set up, then run the whole test suite offline (slow tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The optional extras the tests exercise: Ray (the cluster executor's tests start a local cluster) and
# spandrel (the super-resolution front end's tests read the networks they build).
.venv/bin/python -m pip install -q -e ".[test,ray,sr]"
# Headless Chromium renders the HTML report and pdflatex compiles report.tex in their tests (each test is
# skipped where its tool is missing).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
command -v pdflatex >/dev/null 2>&1 || missing+=(texlive-latex-base texlive-latex-recommended)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
