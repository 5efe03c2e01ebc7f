#!/bin/bash
# nvptx_report.sh: what NVIDIA's compiler is likely to make of our kernels,
# read without a GPU. Each cl/*.cl file is compiled as the GPU path builds
# it (the -D options src/ passes, at the GPU defaults of src/params.c) by
# clang to PTX, assembled by ptxas for sm_90 (H100/H200), and for the two
# GPU attention kernels the SASS of every loop is counted: FFMAs against
# local (shared-memory) loads and everything else.
#
# It is a lead, not a measurement: NVIDIA's OpenCL driver has its own front
# end and builtins, so its register counts can differ; libclc's exp() is a
# software routine of about 40 instructions where NVIDIA's exp() uses the
# MUFU.EX2 unit, so the attention kernels are counted with exp(x) written
# as ex2.approx(x * log2 e), the driver's kind of code.
#
# Needs (none of it at ln-cl's run time):
#   apt-get install clang-15 llvm-15 libclc-15
#   pip install --target DIR nvidia-cuda-nvcc-cu12 nvidia-cuda-cuobjdump \
#       nvidia-cuda-nvdisasm        (ptxas, cuobjdump and nvdisasm)
# and NVPTX_TOOLS=DIR, or those three on PATH.
#
#   bash bench/nvptx_report.sh [WORK_DIR]
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/tmp/ln-nvptx}
mkdir -p "$WORK"
if [ -n "${NVPTX_TOOLS:-}" ]; then
    for d in "$NVPTX_TOOLS"/nvidia/*/bin "$NVPTX_TOOLS"/nvidia/*/*/bin; do
        [ -d "$d" ] && PATH="$d:$PATH"
    done
fi
LLVM=/usr/lib/llvm-15/bin
CLC=/usr/lib/clc/nvptx64--nvidiacl.bc
for tool in clang-15 "$LLVM/llc" "$LLVM/opt" "$LLVM/llvm-link" ptxas cuobjdump nvdisasm; do
    command -v "$tool" >/dev/null || { echo "nvptx_report: $tool not found (see this script's header)" >&2; exit 1; }
done
[ -f "$CLC" ] || { echo "nvptx_report: $CLC not found: apt-get install libclc-15" >&2; exit 1; }

# name source options...: PTX for sm_80 (LLVM 15 stops short of sm_90), which ptxas
# assembles for sm_90; prints ptxas' per-kernel report.
build() {
    local name=$1 src=$2
    shift 2
    clang-15 -x cl -cl-std=CL1.2 -target nvptx64-unknown-nvidiacl -Xclang -finclude-default-header \
        -O3 "$@" -emit-llvm -c "$src" -o "$WORK/$name.bc"
    "$LLVM/llvm-link" "$WORK/$name.bc" "$CLC" -o "$WORK/$name.linked.bc" 2>/dev/null
    "$LLVM/opt" -O3 "$WORK/$name.linked.bc" -o "$WORK/$name.opt.bc"
    "$LLVM/llc" -march=nvptx64 -mcpu=sm_80 -mattr=+ptx70 -O3 "$WORK/$name.opt.bc" -o "$WORK/$name.ptx"
    ptxas -arch=sm_90 -v "$WORK/$name.ptx" -o "$WORK/$name.cubin" 2>&1 |
        awk '/Compiling entry/ { k = $7; gsub(/\047/, "", k) }
             /stack frame/ { frame = $1; spill = $5 + $9 }
             /Used/ { smem = 0
                      for (i = 1; i < NF - 1; i++) if ($(i + 2) == "smem") smem = $i
                      printf "  %-26s %3d registers  %5d B local  %2d B stack  %d B spilled\n",
                             k, $5, smem, frame, spill }'
}

# The *_rows16 kernels are the CPUs' (a row per work-item, float16 vectors;
# unit_rows16_t's stack is its 16 x 16 transpose tile): listed, not used
# on GPUs.
echo "ptxas -arch=sm_90, per kernel (GPU build options; *_rows16: the CPU path):"
build norm "$REPO/cl/norm.cl" -DUT_ROWS=16
build linear "$REPO/cl/linear.cl" -DEPI_VEC=1 # vec_elementwise on GPUs
build positional "$REPO/cl/positional.cl"
# attention_rows and attention_tiles at the GPU defaults (src/params.c:
# 64-query tiles, 32-key tiles; head_dim 32 as in the default model), exp()
# as the driver compiles it (see the header).
{
    echo '__attribute__((overloadable)) float ex2_exp(float x) { return __nvvm_ex2_approx_f(x * 1.44269504f); }'
    # attention_fused (the CPU kernel) takes exp() of vectors: libclc's, as before.
    for w in 2 4 8 16; do
        echo "__attribute__((overloadable)) float$w ex2_exp(float$w x) { return exp(x); }"
    done
    sed -E 's/([^a-z_])exp\(/\1ex2_exp(/g' "$REPO/cl/attention.cl"
} >"$WORK/attention_ex2.cl"
# Residency per SM on Hopper: 64K registers (allocated 8 per thread, warps
# of 32), 228 KB of shared memory (1 KB of it reserved per block), at most
# 32 blocks and 64 warps.
for kernel in rows tiles; do
    case $kernel in
    rows) opts="-DROWS_TILE_Q=64 -DROWS_TILE_K=32" wg=64 ;;
    tiles) opts="-DATTN_TILES=1 -DATTN_TILES_Q=64" wg=128 ;;
    esac
    build "attention_$kernel" "$WORK/attention_ex2.cl" $opts -DATTN_HEAD_DIM=32 -DATTN_FMA=1 |
        grep -E "attention_$kernel " | tee "$WORK/attention_$kernel.report"
    awk -v wg=$wg '{ regs = int(($2 + 7) / 8) * 8; warps = int((wg + 31) / 32)
        by_regs = int(65536 / (regs * warps * 32)); by_smem = int(233472 / ($4 + 1024))
        g = by_regs < by_smem ? by_regs : by_smem; if (g > 32) g = 32
        if (g * warps > 64) g = int(64 / warps)
        printf "  %-26s %d work-items a group: %d groups (%d warps) per SM (registers allow %d,",
               "", wg, g, g * warps, by_regs
        printf " local memory %d)\n", by_smem }' "$WORK/attention_$kernel.report"
    cuobjdump --dump-sass "$WORK/attention_$kernel.cubin" >"$WORK/attention_$kernel.sass" 2>/dev/null
done

# Per loop of each attention kernel: its instructions by kind. A loop is a
# backward branch's range (an inner loop is also counted inside the outer).
echo
echo "SASS loops (one pass through the body; LDS = local loads, 128 = 16-byte):"
for kernel in rows tiles; do
    python3 - "$WORK/attention_$kernel.sass" "attention_$kernel" <<'PY'
import collections, re, sys
path, fn = sys.argv[1], sys.argv[2]
code, inside = [], False
for line in open(path):
    if "Function :" in line:
        inside = line.split(":")[1].strip() == fn
        continue
    m = re.match(r"\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;", line) if inside else None
    if m:
        code.append((int(m.group(1), 16), re.sub(r"^@!?U?P[0-9T]\s+", "", m.group(2))))
for addr, ins in code:
    m = re.search(r"BRA (?:!?U?P\d, )?0x([0-9a-f]+)", ins)
    if not m or int(m.group(1), 16) >= addr:
        continue
    body = [i.split()[0] for a, i in code if int(m.group(1), 16) <= a <= addr]
    kinds = collections.Counter(op.split(".")[0] for op in body)
    ffma, lds = kinds["FFMA"], kinds["LDS"]
    if ffma < 16:
        continue  # the tile-loading loops
    print("  %-16s %5d instructions: %4d FFMA, %3d LDS (%d of 128 bits), %.1f FFMA per LDS, "
          "%d other" % (fn, len(body), ffma, lds, body.count("LDS.128"), ffma / max(lds, 1),
                        len(body) - ffma - lds))
PY
done
