#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): the GPU tests, the bench commands of BENCHMARKS.md and the
# three-experiment reproduction, their figures in <output>/gpu_check.json and gpu_check.md.
#
#   scripts/gpu_check.sh --fetch-wheels       here, where PyPI is reachable: the wheels of the packages
#                                             a GPU machine's image lacks (hydra, albumentations...) into .whl/
#   scripts/gpu_check.sh [--output DIR]       on the GPU machine, from the repository root (under 8 minutes
#                                             on one H100/H200): installs what it needs from the working
#                                             tree (.whl/ and skinclf itself), then runs the check
#   scripts/gpu_check.sh --cpu [--output DIR] anywhere, on the CPU at tiny sizes, with .venv's python
#                                             (make install): checks the script, not the speed (CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

# The packages skinclf needs beyond what a GPU machine's image holds (torch, torchvision, lightning,
# timm, pandas, Pillow, OpenCV, matplotlib, tensorboard, jinja2, filelock, pytest there), for its Python 3.12.
MISSING_ON_GPU_IMAGE=(hydra-core==1.3.2 omegaconf==2.3.0 albumentations==2.0.8 albucore==0.0.24
  pydantic==2.11.7 pydantic-core==2.33.2 annotated-types==0.7.0 typing-inspection==0.4.1
  stringzilla==3.12.5 simsimd==6.4.9 ttach==0.0.3)
# published as source only: built into wheels here (pure Python)
SOURCE_ONLY=(antlr4-python3-runtime==4.9.3 grad-cam==1.5.7)  # hydra's parser; pytorch-grad-cam

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p .whl
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${MISSING_ON_GPU_IMAGE[@]}"
  python3 -m pip wheel --quiet --no-deps -w .whl "${SOURCE_ONLY[@]}"
  ls .whl
  exit 0
fi

if [[ " $* " == *" --cpu "* ]]; then
  exec "${PYTHON:-.venv/bin/python}" scripts/gpu_check.py "$@"
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import hydra, albumentations" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: hydra and albumentations are not installed here and .whl/ holds no wheels:" \
      "run scripts/gpu_check.sh --fetch-wheels where PyPI is reachable, and bring .whl/ along" >&2
    exit 2
  fi
  site=$(mktemp -d)
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# skinclf from the working tree, its configs where the wheel puts them (skinclf.conf)
[[ -e skinclf/conf ]] || ln -s ../conf skinclf/conf
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py "$@"
