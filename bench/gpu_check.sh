#!/bin/bash
# gpu_check.sh: the whole GPU check in one command, for a lent NVIDIA machine
# whose image has CMake, python3 with CUDA PyTorch, and NVIDIA's OpenCL
# library but none of our build dependencies (../shared/device/README.md).
# Steps, in the order they run (LN_GPU_CHECK_STEPS picks; default
# "build untuned gemm ab compare kernels test"):
#   build    ln-cl against the carried packages, and where
#            .device/base.tar.gz holds an earlier ln-cl (git archive
#            --prefix=base/ REV), that one's ln-bench too, for "ab";
#   attn     attention-bench: every attention kernel at B = 1, and how far
#            attention_tiles' output lies from attention_rows';
#   untuned  ln-bench with CLBlast's own GEMM parameters;
#   clblast  CLBlast's own Xgemm tuner (clblast-utils) for LN_GPU_CLBLAST_S
#            (100) at the model's largest GEMM, whose best sets
#   gemm     ln-tune then tries first at the model's B = 8 GEMM shapes
#            (keeping one only if it beats CLBlast's defaults over all of
#            them), within LN_GPU_GEMM_BUDGET (70 s);
#   tune     ln-tune's attention job at B = 8: tiles, S mode and, since
#            2026-11-28, attention_tiles against attention_rows per shape
#            (twice on the H200 it kept the default tiles);
#   ab       ln-bench at B = 8, n = 64/1024/4096 under each of LN_GPU_AB
#            (default "rows tiles base": LN_ATTENTION_KERNEL=rows or tiles;
#            "per": --attention-per-branch; "base": the earlier build's
#            ln-bench with attention_rows), two alternating rounds; of the
#            variants of this build, the one with the lower summed forward
#            time is kept for the next step (ab_choice.txt);
#   gemmab   ln-bench's GEMM table at B = 8, n = 64 and 1024 with every
#            GEMM called row-major, against CLBlast's choice of layout
#            (ln_gemm_col_major), two alternating rounds;
#   compare  bench/compare.py (ln-bench, and ln-run's float64 check, on that
#            kernel) against PyTorch on CUDA on the same card;
#   kernels  test_attention's Check case "kernels" (attention_rows and
#            attention_tiles against float64), on its own;
#   test     ctest on the GPU, less test_attention, Oclgrind, the fuzzers
#            and ln-tune's CLI tests (CPU tools, or budgets that do not
#            fit), within LN_GPU_TEST_S (80).
# Measurements come first, so a lease cut short still brings them back.
#
#   ../shared/device/prepare.sh libjansson-dev libjansson4 clblast-utils
#   cp ../shared/reference/ln_reference.py .device/
#   device run, carry [".device"]:  bash bench/gpu_check.sh
#
# Steps are time-boxed (the lease is short) and one failing step does not
# stop the next; each step's exit status is in $OUT/steps.txt. On an H200
# (2026-11-27) the old default steps (build untuned clblast gemm compare ab
# test) took about 8 minutes, the tests 4 of them (test_attention alone
# 236 s); "attn", cold, printed nothing within 30 s. The default steps'
# limits add up to 580 s, inside one 10-minute call.
#   .device/base.tar.gz, 2026-11-28: 5904701, the code before the forward
# went from 52 launches to 29 on GPUs, so that "ab" measures that change.
set -u
OUT=${OUT:-/tmp/ln-gpu-check}
mkdir -p "$OUT"
# The default since 2026-11-28: the n = 1024 target is mostly GEMM time
# (57% at B = 8), and CLBlast's defaults ran the largest GEMM at 15.6
# TFLOP/s (host-timed) where the first set ln-tune now tries ran at 37.0
# (CLBlast's tuner, kernel alone). So the GEMM job and its untuned
# baseline replace attn (attention-bench at B = 1; ab times both
# kernels in the forward, and kernels checks them) and gemmab (ln_gemm's
# layout choice against row-major: at most one transpose pass per
# indirect GEMM, a smaller lever; still unmeasured on a GPU).
STEPS=${LN_GPU_CHECK_STEPS:-build untuned gemm ab compare kernels test}
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

BASE=/tmp/ln-gpu-base
step build 60 bash -c "cmake -S '$REPO' -B $BUILD $LN_CMAKE_OPENCL -DCMAKE_BUILD_TYPE=Release &&
    cmake --build $BUILD -j16 && if [ -f '$REPO/.device/base.tar.gz' ]; then
        rm -rf $BASE && mkdir -p $BASE && tar xzf '$REPO/.device/base.tar.gz' -C $BASE &&
        cmake -S $BASE/base -B $BASE/build $LN_CMAKE_OPENCL -DCMAKE_BUILD_TYPE=Release &&
        cmake --build $BASE/build -j16 --target ln-bench; fi"
step attn 75 "$BUILD/bench/attention-bench" 1024 4096
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
# The attention variants in turn, two rounds, the same tuning for all.
AB=${LN_GPU_AB:-rows tiles base}
[ -x $BASE/build/bench/ln-bench ] || AB=${AB//base/}
# A variant that fails (a kernel NVIDIA's compiler refuses, say) is
# logged and left out of the choice; the others still run.
step ab 145 bash -c "fail=0; for r in 1 2; do for how in $AB; do
    bench='$BUILD/bench/ln-bench'; flag=; kern=\$how
    case \$how in per) flag=--attention-per-branch; kern= ;;
        base) bench=$BASE/build/bench/ln-bench; kern=rows ;; esac
    LN_ATTENTION_KERNEL=\$kern \$bench --batch 8 --n 64,1024,4096 --repeats 10 \
        --warmup 2 --no-gemm --json \$flag >'$OUT/ab_'\$how\$r.json ||
        { echo \"ab: \$how, round \$r, failed\"; fail=1; }
done; done; exit \$fail"
# The variant with the lowest forward time summed over the shapes and
# rounds; per-branch runs the device's own kernel; base is not this build.
choice=
case " $STEPS " in *" ab "*) choice=$(python3 - "$OUT" ${AB//base/} <<'PY' 2>>"$OUT/ab_choice.txt"
import json, sys
out, names = sys.argv[1], sys.argv[2:]
total = {}
for how in names:
    for r in (1, 2):
        try:
            shapes = json.load(open("%s/ab_%s%d.json" % (out, how, r)))["shapes"]
            total[how] = total.get(how, 0.0) + sum(s["encode_device_ms"] for s in shapes)
        except Exception as e:
            total[how] = float("inf")
            print("ab_%s%d.json: %r" % (how, r, e), file=sys.stderr)
best = min(total, key=total.get)
print(" ".join("%s %.2f ms" % kv for kv in total.items()), "->", best, file=sys.stderr)
print(best if total[best] < float("inf") else "")
PY
) ;; esac
case "$choice" in rows | tiles | fused) export LN_ATTENTION_KERNEL=$choice ;; esac
echo "LN_ATTENTION_KERNEL=${LN_ATTENTION_KERNEL:-} for compare" >>"$OUT/ab_choice.txt"
# Every GEMM row-major against CLBlast's choice (ln_gemm_col_major), two
# alternating rounds of the GEMM table at B = 8, n = 64 and 1024.
step gemmab 45 bash -c "fail=0; for r in 1 2; do for how in row auto; do
    '$BUILD/bench/ln-bench' --batch 8 --n 64,1024 --repeats 5 --warmup 1 --no-model --json \
        --gemm-layout \$how >'$OUT/gemmab_'\$how\$r.json ||
        { echo \"gemmab: \$how, round \$r, failed\"; fail=1; }
done; done; exit \$fail"
step compare 75 python3 "$REPO/bench/compare.py" --bench "$BUILD/bench/ln-bench" \
    --repeats 10 --warmup 2 --compile-shapes 8x1024 --out "$OUT/compare.json"
# Oclgrind and the fuzzers are CPU tools; ln-tune's CLI tests run on
# budgets (tune_cli_gemm's is 150 s) that do not fit this step, and ctest
# would add their fixtures back if only some were left out. Everything
# else runs on the GPU.
# test_attention's GPU kernels on their own (Check case "kernels"): the
# whole of test_attention took 236 s there (2026-11-27), more than a lease
# leaves beside the measurements. Then every other test.
step kernels 105 env -u LN_ATTENTION_KERNEL CK_RUN_CASE=kernels CK_DEFAULT_TIMEOUT=100 \
    LN_CACHE_DIR=$BUILD/ln-cache "$BUILD/tests/test_attention"
step test ${LN_GPU_TEST_S:-80} env -u LN_ATTENTION_KERNEL bash -c "cd $BUILD && ctest -j8 \
    --timeout ${LN_GPU_TEST_S:-80} --output-on-failure -E 'oclgrind|fuzz|tune_cli|test_attention'"
"$BUILD/tune/ln-tune" --show >"$OUT/tuned.txt" 2>&1
cat "$OUT/steps.txt"
# A lease brings back at most 8 files of $OUT (2026-11-27: 18 were
# written and the first 8 by name came back, without compare.log or the
# GEMM job's log): everything goes into one archive, and the files read
# first stay beside it.
(cd "$OUT" && tar czf /tmp/gpu_check.tgz . && find . -type f ! -name steps.txt \
    ! -name compare.log ! -name compare.json ! -name tuned.txt ! -name test.log -delete &&
    mv /tmp/gpu_check.tgz .)
