#!/bin/bash
# gpu_check.sh: the whole GPU check in one command, for a lent NVIDIA machine
# whose image has CMake, python3 with CUDA PyTorch, and NVIDIA's OpenCL
# library but none of our build dependencies (../shared/device/README.md):
# build ln-cl against the carried packages, attention-bench, tune the
# attention tiles, bench/compare.py (ln-bench against PyTorch on CUDA on the
# same card), then the test suite on the GPU: measurements first, so a
# lease cut short still brings them back. Every log and result lands in
# $OUT (default /tmp/ln-gpu-check).
#
#   ../shared/device/prepare.sh            # here, once: fills .device/
#   cp ../shared/reference/ln_reference.py .device/
#   device run, carry [".device"]:  bash bench/gpu_check.sh
#
# Steps are time-boxed (the lease is short) and one failing step does not
# stop the next; each step's exit status is in $OUT/steps.txt.
# LN_GPU_CHECK_STEPS picks steps (default: "build attn tune compare test").
set -u
OUT=${OUT:-/tmp/ln-gpu-check}
mkdir -p "$OUT"
STEPS=${LN_GPU_CHECK_STEPS:-build attn tune compare test}
BUILD=/tmp/ln-gpu-build
REPO=$(cd "$(dirname "$0")/.." && pwd)
t0=$(date +%s)

step() { # name, limit in seconds, command...
    local name=$1 limit=$2
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    local s=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc ${limit}s-limit took=$(($(date +%s) - s))s at=$(($(date +%s) - t0))s" |
        tee -a "$OUT/steps.txt"
}

{
    source "$REPO/.device/env.sh"
    # Only the GPU: the image's PoCL would otherwise be a second platform.
    mkdir -p /tmp/nv && cp /tmp/ln-vendors/nvidia.icd /tmp/nv/ && export OCL_ICD_VENDORS=/tmp/nv
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    clinfo -l
    python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
} >"$OUT/machine.log" 2>&1
# ln-tune and the benchmarks share a cache of their own; the tests keep theirs
# (in the build tree), so a tuned file cannot change what they check.
export LN_CACHE_DIR=/tmp/ln-gpu-check-cache
export LN_REFERENCE=${LN_REFERENCE:-$REPO/.device/ln_reference.py}
export PYTHONUNBUFFERED=1

step build 180 bash -c "cmake -S '$REPO' -B $BUILD $LN_CMAKE_OPENCL -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD -j16"
step attn 30 "$BUILD/bench/attention-bench" 1024 4096
# Attention tiles at the shapes the encoder calls it with at B = 8 (n = 4096
# runs in chunks of 2 sequences); the GEMM job is left out: on the H200 none
# of its first candidates beat CLBlast's defaults (2026-11-26).
step tune 80 "$BUILD/tune/ln-tune" --shapes 8x1024,2x4096 --kernels attention --budget 60
step compare 120 python3 "$REPO/bench/compare.py" --bench "$BUILD/bench/ln-bench" \
    --repeats 10 --warmup 2 --compile-shapes 8x1024 --out "$OUT/compare.json"
# Oclgrind and the fuzzers are CPU tools; everything else runs on the GPU.
step test 150 bash -c "cd $BUILD && ctest -j8 --timeout 140 --output-on-failure -E 'oclgrind|fuzz'"
cat "$OUT/steps.txt"
