#!/usr/bin/env bash
# GPU benchmark of the r50 / x101 presets (issue #15), in two steps because the GPU machine reaches
# no network:
#
#   bash bench/gpu.sh prepare     HERE (PyPI reachable): fills .gpu/ (git-ignored through
#                                 .git/info/exclude) with the pure-Python wheels mmdet needs for
#                                 Python 3.12, the mmcv 2.1.0 source, and a copy of EMPS-dev (15 MB)
#   bash bench/gpu.sh             THERE, with .gpu carried: installs into /tmp/site, builds mmcv
#                                 2.1.0 with CUDA ops for this GPU only (or installs a wheel built
#                                 by an earlier run: .gpu/wheels/mmcv-2.1.0-*.whl), then runs
#                                 bench/bench_gpu.py: r50 and x101 training s/it with and without
#                                 AMP, peak GPU memory, inference img/s beside mmdetection's V100
#                                 figures. Output and the built mmcv wheel land in $OUT (or ./.gpu/out).
#
# The device machine's image brings python3 3.12 with a CUDA torch (2.11+cu130 when last seen),
# nvcc, numpy, scipy, opencv-headless, matplotlib; nothing is downloaded there. Budget: mmcv's
# CUDA build ~5-8 min on 16 cores for one architecture, the benchmark ~2-3 min (200 timed
# iterations per preset and precision). GPU_ITERATIONS, GPU_ARCHS, TORCH_CUDA_ARCH_LIST override.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
MMCV_VERSION=2.1.0
log() { printf '[gpu] %s\n' "$*" >&2; }

if [ "${1:-run}" = "prepare" ]; then
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
  mkdir -p "$GPU_DIR/wheels"
  PY=${PYTHON:-.venv/bin/python}
  # pure-Python or manylinux wheels for CPython 3.12 on x86-64; versions as in this project's venv
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$GPU_DIR/wheels" mmengine==0.10.7 mmdet==3.3.0 addict==2.4.0 yapf==0.43.0 platformdirs \
    termcolor terminaltables==3.1.10 pycocotools shapely
  # mmcv's setup.py imports pkg_resources (gone from setuptools >= 81): a setuptools for its build
  mkdir -p "$GPU_DIR/build"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    -d "$GPU_DIR/build" setuptools==75.8.0
  "$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$GPU_DIR/wheels" \
    "mmcv==$MMCV_VERSION"
  rm -rf "$GPU_DIR/emps-dev" && cp -r ../shared/data/emps-dev "$GPU_DIR/emps-dev" && chmod -R u+w "$GPU_DIR/emps-dev"
  du -sh "$GPU_DIR"
  log "prepared $GPU_DIR; run there: bash bench/gpu.sh  (carry .gpu)"
  exit 0
fi

OUT=${OUT:-$GPU_DIR/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_bench.log") 2>&1
started=$(date +%s)
[ -d "$GPU_DIR/wheels" ] || { log "no $GPU_DIR/wheels: run 'bash bench/gpu.sh prepare' here first and carry .gpu"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

SITE=/tmp/site
mkdir -p "$SITE"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
  $(ls "$GPU_DIR"/wheels/*.whl | grep -v "/mmcv-")
export PYTHONPATH="$SITE:$PWD"

wheel=$(ls "$GPU_DIR"/wheels/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  arch=${TORCH_CUDA_ARCH_LIST:-$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')}
  log "building mmcv $MMCV_VERSION with CUDA ops for arch $arch ($(nproc) jobs)"
  t0=$(date +%s)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/build-site "$GPU_DIR"/build/*.whl
  PYTHONPATH="/tmp/build-site:$PYTHONPATH" MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" \
    MAX_JOBS=$(nproc) python3 -m pip wheel -q --no-build-isolation --no-deps "$GPU_DIR"/wheels/mmcv-"$MMCV_VERSION".tar.gz -w /tmp/mmcv-wheel
  wheel=$(ls /tmp/mmcv-wheel/mmcv-*.whl | head -n1)
  log "mmcv built in $(( $(date +%s) - t0 )) s: $(du -h "$wheel" | cut -f1)"
  cp "$wheel" "$OUT/" || true  # carry it next time as .gpu/wheels/ to skip the build
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$wheel"
python3 -c 'import torch; from mmcv.ops import roi_align, nms; b = torch.rand(8, 4, device="cuda"); b[:, 2:] += b[:, :2]; nms(b, torch.rand(8, device="cuda"), 0.5); print("mmcv CUDA ops load")'
log "install took $(( $(date +%s) - started )) s"

PYTHONUNBUFFERED=1 python3 bench/bench_gpu.py --data "$GPU_DIR/emps-dev" \
  --iterations "${GPU_ITERATIONS:-200}" --archs "${GPU_ARCHS:-r50,x101}"
log "done in $(( $(date +%s) - started )) s"
