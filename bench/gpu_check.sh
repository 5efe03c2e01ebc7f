#!/bin/bash
# gpu_check.sh: the whole GPU check in one command, for a lent NVIDIA machine
# whose image has CMake, python3 with CUDA PyTorch, and NVIDIA's OpenCL
# library but none of our build dependencies (../shared/device/README.md):
# build ln-cl against the carried packages; ln-bench with CLBlast's own GEMM
# parameters; CLBlast's own Xgemm tuner (clblast-utils) for a fixed time at
# the model's largest GEMM, whose best sets ln-tune then tries first at the
# model's B = 8 GEMM shapes (keeping one only if it beats CLBlast's defaults
# over all of them); bench/compare.py (ln-bench tuned, against PyTorch on
# CUDA on the same card); ln-bench with every branch's attention in one
# launch against one launch per branch, alternately (ab); then the test
# suite on the GPU. Measurements come first, so a lease cut short still
# brings them back.
#
#   ../shared/device/prepare.sh libjansson-dev libjansson4 clblast-utils
#   cp ../shared/reference/ln_reference.py .device/
#   device run, carry [".device"]:  bash bench/gpu_check.sh
#
# Steps are time-boxed (the lease is short) and one failing step does not
# stop the next; each step's exit status is in $OUT/steps.txt.
# LN_GPU_CHECK_STEPS picks steps (default: "build untuned clblast gemm
# compare ab test"; "attn" (attention-bench) and "tune" (attention tiles)
# are there to add; "attn", cold, printed nothing within 30 s on
# 2026-11-27 and now has 90). LN_GPU_CLBLAST_S: seconds of CLBlast's tuner (100);
# LN_GPU_GEMM_BUDGET: ln-tune's GEMM budget (70 s: CLBlast's defaults, about
# eight sets at 3-16 s of NVIDIA build each and the mix). The default steps
# took about 8 minutes on an H200 (2026-11-27: the tests 4 of them,
# test_attention alone 236 s), plus the machine's start: one call within
# its 10-minute limit, inside a 15-minute lease.
set -u
OUT=${OUT:-/tmp/ln-gpu-check}
mkdir -p "$OUT"
STEPS=${LN_GPU_CHECK_STEPS:-build untuned clblast gemm compare ab test}
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
# Each check tunes for itself: a warm machine keeps /tmp between calls.
rm -rf "$LN_CACHE_DIR"
export LN_REFERENCE=${LN_REFERENCE:-$REPO/.device/ln_reference.py}
export PYTHONUNBUFFERED=1

step build 60 bash -c "cmake -S '$REPO' -B $BUILD $LN_CMAKE_OPENCL -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD -j16"
step attn 90 "$BUILD/bench/attention-bench" 1024 4096
# The forward and CLBlast's GEMM table with CLBlast's own parameters (the
# cache directory is still empty), for the tuned-against-untuned ratio in
# the same run.
step untuned 30 bash -c "'$BUILD/bench/ln-bench' --batch 8 --n 64,1024,4096 --repeats 10 \
    --warmup 2 --json >'$OUT/untuned.json'"
# CLBlast's own Xgemm search (its variation 1 explores GPU-shaped sets in
# random order) at the model's largest GEMM (ffn1 w384 at B = 8, n = 1024,
# rows x 1536 x 384), stopped after LN_GPU_CLBLAST_S: its table is read, not
# the JSON it writes only when a search ends.
step clblast $((${LN_GPU_CLBLAST_S:-100} + 15)) bash -c "cd '$OUT' && timeout ${LN_GPU_CLBLAST_S:-100} \
    clblast_tuner_xgemm -m 8192 -n 1536 -k 384 -runs 2 >'$OUT/clblast_tuner.txt' 2>&1; true"
mapfile -t best < <(python3 "$REPO/bench/clblast_best_sets.py" "$OUT/clblast_tuner.txt" 3 \
    2>>"$OUT/clblast_best.txt")
tries=()
for set in "${best[@]}"; do tries+=(--gemm-try "$set"); done
# CLBlast's GEMM at the B = 8 shapes the targets name (n = 4096 runs in
# chunks of 2 sequences, whose GEMMs have the 8192 rows of 8x1024): those
# sets first, then the curated ones while the budget lasts.
step gemm $((${LN_GPU_GEMM_BUDGET:-70} + 15)) "$BUILD/tune/ln-tune" --shapes 8x64,8x1024 \
    --kernels gemm --gemm-random 0 "${tries[@]}" --budget "${LN_GPU_GEMM_BUDGET:-70}"
# Attention tiles at the shapes the encoder calls it with at B = 8; twice on
# the H200 (2026-11-26) they kept the defaults, hence not a default step.
step tune 80 "$BUILD/tune/ln-tune" --shapes 8x1024,2x4096 --kernels attention --budget 60
step compare 75 python3 "$REPO/bench/compare.py" --bench "$BUILD/bench/ln-bench" \
    --repeats 10 --warmup 2 --compile-shapes 8x1024 --out "$OUT/compare.json"
# One attention launch for every branch of a layer against one per branch
# (ln-bench --attention-per-branch), two alternating rounds under the same
# tuning.
step ab 90 bash -c "for r in 1 2; do for how in one per; do
    flag=; [ \$how = per ] && flag=--attention-per-branch
    '$BUILD/bench/ln-bench' --batch 8 --n 64,1024,4096 --repeats 10 --warmup 2 --no-gemm \
        --json \$flag >'$OUT/ab_'\$how\$r.json || exit 1
done; done"
# Oclgrind and the fuzzers are CPU tools; ln-tune's CLI tests run on
# budgets (tune_cli_gemm's is 150 s) that do not fit this step, and ctest
# would add their fixtures back if only some were left out. Everything
# else runs on the GPU.
step test 260 bash -c "cd $BUILD && ctest -j8 --timeout 250 --output-on-failure -E 'oclgrind|fuzz|tune_cli'"
"$BUILD/tune/ln-tune" --show >"$OUT/tuned.txt" 2>&1
cat "$OUT/steps.txt"
# A lease brings back at most 8 files of $OUT (2026-11-27: 18 were
# written and the first 8 by name came back, without compare.log or the
# GEMM job's log): everything goes into one archive, and the files read
# first stay beside it.
(cd "$OUT" && tar czf /tmp/gpu_check.tgz . && find . -type f ! -name steps.txt \
    ! -name compare.log ! -name compare.json ! -name tuned.txt ! -name test.log -delete &&
    mv /tmp/gpu_check.tgz .)
