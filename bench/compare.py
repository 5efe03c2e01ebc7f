#!/usr/bin/env python3
"""compare.py: ln-cl against PyTorch on the same weights, shapes and machine,
in one invocation. It owns the PyTorch side of the benchmark: the reference
LNEncoder as written (shared/reference/ln_reference.py), a variant with the
same maths through F.scaled_dot_product_attention and a float mask
(SDPASemanticAttention below; checked against the reference first), and on
CUDA a torch.compile of that variant; and the GEMM side: ln-bench's CLBlast
SGEMM figures against numpy (OpenBLAS) on a CPU, torch.matmul fp32 with TF32
off on CUDA, at the model's GEMM shapes.

    python3 bench/compare.py [--bench build-bench/bench/ln-bench]
        [--batch 1,8] [--n 64,256,1024,4096] [--skip 8x4096] [--repeats 5]
        [--warmup 1] [--rounds 1] [--seed 0] [--device SPEC] [--out results.json]

Steps:
 1. Seeded LNEncoder weights (torch.manual_seed) saved as safetensors with
    the `ln_config` metadata; ln-bench gets them with --model, so both sides
    run the same weights.
 2. Checks: the SDPA variant matches the reference (relative L2 <= 1e-5, in
    float64 and float32, with padding); ln-run's output on those weights
    matches the float64 reference (<= 1e-4, SPEC's bound) when ln-run is
    found beside ln-bench; per shape, ln-bench's FLOP count equals torch's
    FlopCounterMode of the reference (adjusted as torch_flops says).
 3. Per shape, interleaved: ln-bench for that shape (--json), then the
    reference, the SDPA variant (and the compiled one) taking turns in every
    repeat: eager, float32, inference mode, median of --repeats after
    --warmup.
 4. ln-bench's GEMM section for all shapes, then numpy (CPU) or
    torch.matmul (CUDA) at the same shapes.
 5. Tables with ln-cl / PyTorch time ratios (> 1: ln-cl slower); --out
    keeps every number as JSON.

--rounds R repeats steps 3 and 4 R times, one pass over every shape per
round, and reports per shape the median over rounds of each round's
ratio: on a shared VM whose speed drifts by 2x over seconds (steal), a
ratio of two timings taken a second apart is steadier than either timing,
and the median of R such ratios steadier still.

On a CPU, defaults skip B=8 n=4096 (minutes per forward on 2 cores).
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE may be set in this environment (older
OpenBLAS builds need them on some processors); they slow a current numpy, so
the numpy GEMM timing runs in a child process with both unset, and prints
the kernel threadpoolctl reports there.
"""
import argparse
import glob
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def find_reference():
    for p in (os.environ.get("LN_REFERENCE", ""),
              os.path.join(REPO, "..", "shared", "reference", "ln_reference.py"),
              os.path.join(REPO, "shared", "reference", "ln_reference.py"),
              "/work/shared/reference/ln_reference.py"):
        if p and os.path.isfile(p):
            return os.path.abspath(p)
    sys.exit("compare.py: ln_reference.py not found (set LN_REFERENCE)")


def cpu_ticks():
    """(all, steal) jiffies of /proc/stat's cpu line, None off Linux: steal
    is time the hypervisor gave this VM's CPUs to someone else."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[7]
    except (OSError, ValueError, IndexError):
        return None


def steal_pct(t0, t1):
    if not t0 or not t1 or t1[0] <= t0[0]:
        return None
    return 100.0 * (t1[1] - t0[1]) / (t1[0] - t0[0])


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = load_module(find_reference(), "ln_reference")


class SDPASemanticAttention(ref.SemanticAttention):
    """The reference's SemanticAttention with the same parameters and maths,
    through scaled_dot_product_attention: the semantic term (and the padding)
    is a float mask temperature[h] * S [B, H, n, n] added to q k^T / sqrt(hd)."""

    def forward(self, z, unit, pad=None):
        B, n, w = z.shape
        H, hd = self.heads, self.head_dim

        def split(t):
            return t.view(B, n, H, hd).transpose(1, 2)

        q, k, v = split(self.q_proj(z)), split(self.k_proj(z)), split(self.v_proj(z))
        sim = unit @ unit.transpose(-2, -1)
        mask = self.temperature.view(1, H, 1, 1) * sim[:, None]
        if pad is not None:
            mask = mask.masked_fill(pad[:, None, None, :], float("-inf"))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scale 1/sqrt(hd)
        return self.out_proj(o.transpose(1, 2).reshape(B, n, w))


class LNEncoderSDPA(ref.LNEncoder):
    """LNEncoder whose attention modules are SDPASemanticAttention; the
    state_dict (names, shapes) is the reference's."""

    def __init__(self, config=None):
        super().__init__(config)
        for layer in self.layers:
            for proc in layer.processors:
                proc.attn.__class__ = SDPASemanticAttention


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def parse_list(s):
    return [int(v) for v in s.split(",") if v]


def parse_skip(s):
    out = set()
    for item in filter(None, s.split(",")):
        b, n = item.lower().split("x")
        out.add((int(b), int(n)))
    return out


def find_bench(explicit):
    if explicit:
        return os.path.abspath(explicit)
    found = [p for p in glob.glob(os.path.join(REPO, "build*", "bench", "ln-bench"))
             if os.access(p, os.X_OK)]
    if not found:
        sys.exit("compare.py: no build*/bench/ln-bench; build it (README 'Performance') or "
                 "pass --bench")
    return max(found, key=os.path.getmtime)


def git_state():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.split("\n")
        dirty = [l[3:] for l in dirty if l.strip()]
        return {"rev": rev or "(not a git checkout)", "modified": dirty}
    except OSError:
        return {"rev": "(git not found)"}


# ----------------------------------------------------------------- torch side

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_torch(models, x, repeats, warmup, device):
    """Median ms of each model(x) after warm-up, the models taking turns in
    every repeat (so machine load hits them alike); peak CUDA bytes of each
    (measured in a separate run per model) when on CUDA."""
    times = [[] for _ in models]
    peaks = [None for _ in models]
    with torch.inference_mode():
        for m in models:
            for _ in range(warmup):
                m(x)
        sync(device)
        for _ in range(repeats):
            for i, m in enumerate(models):
                t = time.perf_counter()
                m(x)
                sync(device)
                times[i].append((time.perf_counter() - t) * 1e3)
        if device.type == "cuda":
            for i, m in enumerate(models):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                m(x)
                sync(device)
                peaks[i] = torch.cuda.max_memory_allocated()
    return [{"ms": statistics.median(t), "runs_ms": t, "peak_bytes": p}
            for t, p in zip(times, peaks)]


def check_sdpa(config, device):
    """The SDPA variant against the reference, with padding, float64 and float32."""
    torch.manual_seed(1)
    m = ref.LNEncoder(config)
    v = LNEncoderSDPA(config)
    v.load_state_dict(m.state_dict())
    x = torch.randn(2, 37, m.config["d_model"])
    lengths = torch.tensor([37, 20])
    out = {}
    with torch.inference_mode():
        for dt in (torch.float64, torch.float32):
            mm, vv = m.to(device, dt), v.to(device, dt)
            xx, ll = x.to(device, dt), lengths.to(device)
            a, b = mm(xx, lengths=ll), vv(xx, lengths=ll)
            err = max(rel_l2(a[0], b[0]), rel_l2(a[1, :20], b[1, :20]))
            out[str(dt).replace("torch.", "")] = err
    ok = all(e <= 1e-5 for e in out.values())
    return ok, out


def check_ln_run(ln_run, weights, model64, d, device_spec, tmp):
    """ln-run on the saved weights against the float64 reference (SPEC: 1e-4)."""
    torch.manual_seed(2)
    x = torch.randn(2, 64, d, dtype=torch.float32)
    inp, outp = os.path.join(tmp, "check_x.npy"), os.path.join(tmp, "check_out.npy")
    np.save(inp, x.numpy())
    cmd = [ln_run, "--model", weights, "--input", inp, "--output", outp]
    if device_spec:
        cmd += ["--device", device_spec]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return False, "ln-run failed: " + (r.stderr.strip() or r.stdout.strip())
    got = torch.from_numpy(np.load(outp))
    with torch.inference_mode():
        want = model64(x.double())
    err = rel_l2(got, want)
    return err <= 1e-4, err


def torch_flops(config, b, n):
    """Matmul FLOPs of the reference forward by torch's FlopCounterMode, on
    the meta device (no memory, no time). The reference recomputes S in
    every attention call and runs the positional MLP's first layer (k = 1)
    as a matmul; ln-bench counts S once and leaves that layer out (it is an
    elementwise kernel in ln-cl), so expected = ln-bench's total
    + (branches * layers - 1) * S + 2 B n pos_hidden."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        m = ref.LNEncoder(config)
        x = torch.empty(b, n, m.config["d_model"])
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        m(x)
    c = m.config
    s_flops = 2.0 * b * n * n * c["d_model"]
    return counter.get_total_flops() - (len(c["scales"]) * c["n_layers"] - 1) * s_flops \
        - 2.0 * b * n * c["pos_hidden"]


# ----------------------------------------------------------------- ln-bench

def run_bench(bench, args, extra, env):
    cmd = [bench, "--json", "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--profile-runs", str(args.profile_runs)] + extra
    if args.device:
        cmd += ["--device", args.device]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("compare.py: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr[-4000:]))
    return json.loads(r.stdout)


# ----------------------------------------------------------------- GEMMs

NUMPY_GEMM = r"""
import json, statistics, sys, time
import numpy as np
spec = json.load(sys.stdin)
info = []
try:
    import threadpoolctl
    info = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer", "filepath")}
            for d in threadpoolctl.threadpool_info()]
except Exception as e:
    info = [{"error": repr(e)}]
rng = np.random.default_rng(0)
out = []
for g in spec["gemms"]:
    b, m, n, k = g["batch"], g["m"], g["n"], g["k"]
    A = rng.standard_normal((b, m, k), dtype=np.float32)
    B = rng.standard_normal((b, n, k), dtype=np.float32)
    f = (lambda: A[0] @ B[0].T) if b == 1 else (lambda: np.matmul(A, B.transpose(0, 2, 1)))
    for _ in range(spec["warmup"]):
        f()
    t = []
    for _ in range(max(spec["repeats"], 11)):  # sub-ms calls: more runs, steadier median
        t0 = time.perf_counter(); f(); t.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(t)
    # As ln-bench's stream figure: the same number of calls back to back.
    calls, ts = g["stream_calls"], []
    for _ in range(max(spec["repeats"], 5)):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        ts.append((time.perf_counter() - t0) * 1e3 / calls)
    out.append({"ms": ms, "min_ms": min(t), "gflops": 2.0 * b * m * n * k / (ms * 1e6),
                "stream_ms": statistics.median(ts)})
json.dump({"gemms": out, "threadpool": info, "numpy": np.__version__}, sys.stdout)
"""


def numpy_gemms(gemms, args):
    env = dict(os.environ)
    was = {v: env.pop(v) for v in OPENBLAS_VARS if v in env}
    r = subprocess.run([sys.executable, "-c", NUMPY_GEMM], input=json.dumps(
        {"gemms": gemms, "repeats": args.repeats, "warmup": args.warmup}),
        capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print("compare.py: numpy GEMM timing failed:\n" + r.stderr[-2000:])
        return None
    res = json.loads(r.stdout)
    res["unset"] = was
    return res


def torch_gemms(gemms, args, device):
    out = []
    for g in gemms:
        b, m, n, k = g["batch"], g["m"], g["n"], g["k"]
        A = torch.randn(b, m, k, device=device)
        B = torch.randn(b, n, k, device=device)
        f = (lambda: A[0] @ B[0].T) if b == 1 else (lambda: torch.matmul(A, B.transpose(1, 2)))
        with torch.inference_mode():
            for _ in range(args.warmup):
                f()
            sync(device)
            t = []
            for _ in range(max(args.repeats, 11)):
                t0 = time.perf_counter()
                f()
                sync(device)
                t.append((time.perf_counter() - t0) * 1e3)
            calls, ts = g["stream_calls"], []
            for _ in range(max(args.repeats, 5)):
                t0 = time.perf_counter()
                for _ in range(calls):
                    f()
                sync(device)
                ts.append((time.perf_counter() - t0) * 1e3 / calls)
        ms = statistics.median(t)
        out.append({"ms": ms, "min_ms": min(t), "gflops": 2.0 * b * m * n * k / (ms * 1e6),
                    "stream_ms": statistics.median(ts)})
    return out


# ----------------------------------------------------------------- main

def fmt(v, spec="%.2f"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", help="ln-bench executable (default: newest build*/bench/ln-bench)")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--n", default="64,256,1024,4096")
    ap.add_argument("--skip", default=None,
                    help="BxN shapes to leave out (default on CPU: 8x4096; on CUDA: none)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1,
                    help="passes over all shapes, ratios taken per pass (default 1)")
    ap.add_argument("--profile-runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None,
                    help="ln_config JSON, or a file holding it (default: SPEC's)")
    ap.add_argument("--device", default=None,
                    help="ln-cl device spec (default: 'NVIDIA' with CUDA, else LN_DEVICE/first)")
    ap.add_argument("--weights", default=None, help="where to save the weights (default: temp)")
    ap.add_argument("--out", default=None, help="write every number as JSON here")
    ap.add_argument("--no-gemm", action="store_true")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the SDPA variant on CPU (always tried on CUDA)")
    ap.add_argument("--compile-shapes", default=None,
                    help="BxN shapes at which to time torch.compile (default: all); each "
                         "new shape costs a compilation of tens of seconds")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds takes a count >= 1")

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if args.device is None:
            args.device = "NVIDIA"
    skip = parse_skip(args.skip if args.skip is not None else ("" if cuda else "8x4096"))
    compile_shapes = parse_skip(args.compile_shapes) if args.compile_shapes else None
    shapes = [(b, n) for b in parse_list(args.batch) for n in parse_list(args.n)
              if (b, n) not in skip]
    bench = find_bench(args.bench)
    ln_run = os.path.join(os.path.dirname(os.path.dirname(bench)), "ln-run")
    config = None
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            try:
                with open(text) as f:
                    text = f.read()
            except OSError as e:
                sys.exit(f"compare.py: --config {args.config!r}: neither JSON nor a readable file: {e}")
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            sys.exit(f"compare.py: --config {args.config!r}: not valid JSON: {e}")

    tmp = tempfile.mkdtemp(prefix="ln-compare-")
    weights = args.weights or os.path.join(tmp, "ln_weights.safetensors")
    torch.manual_seed(args.seed)
    model = ref.LNEncoder(config).float().eval()
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights,
              metadata={"ln_config": model.config_json()})
    d = model.config["d_model"]
    sdpa = LNEncoderSDPA(config).float().eval()
    sdpa.load_state_dict(model.state_dict())
    model, sdpa = model.to(device), sdpa.to(device)
    compiled = None
    if cuda or args.compile:
        try:
            compiled = torch.compile(sdpa)
        except Exception as e:  # no compiler toolchain, unsupported platform
            print("compare.py: torch.compile unavailable: %r" % (e,))

    env_info = {
        "host": platform.node(), "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "loadavg_start": os.getloadavg(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "cuda_name": torch.cuda.get_device_name() if cuda else None, "git": git_state(),
        "bench": bench, "weights": weights,
        "openblas_env": {v: os.environ.get(v) for v in OPENBLAS_VARS},
    }
    print("compare.py: torch %s on %s (%d threads), ln-bench %s, git %s" % (
        torch.__version__, env_info["cuda_name"] or "CPU", torch.get_num_threads(), bench,
        env_info["git"].get("rev")))
    if env_info["git"].get("modified"):
        print("  working tree has uncommitted changes in: " + ", ".join(env_info["git"]["modified"]))
    print("  weights: %s (torch.manual_seed(%d)), shapes: %s%s" % (
        weights, args.seed, " ".join("%dx%d" % s for s in shapes),
        ("; skipped " + " ".join("%dx%d" % s for s in sorted(skip))) if skip else ""))

    checks = {}
    if not args.no_check:
        ok, errs = check_sdpa(config, device)
        checks["sdpa_vs_reference"] = errs
        print("check: SDPA variant vs reference, relative L2: %s -> %s" % (
            ", ".join("%s %.2e" % kv for kv in errs.items()), "ok" if ok else "FAILED"))
        if not ok:
            sys.exit("compare.py: the SDPA variant does not match the reference")
        if os.access(ln_run, os.X_OK):
            m64 = ref.LNEncoder(config).double().eval()
            m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
            ok, err = check_ln_run(ln_run, weights, m64, d, args.device, tmp)
            checks["ln_run_vs_reference64"] = err
            print("check: ln-run on these weights vs float64 reference, B=2 n=64: %s -> %s" % (
                fmt(err, "%.2e") if isinstance(err, float) else err, "ok" if ok else "FAILED"))
            if not ok:
                sys.exit("compare.py: ln-cl does not match the reference on these weights")
        else:
            print("check: %s not found; ln-cl output not checked" % ln_run)

    env = dict(os.environ)
    rows = []
    for rnd in range(args.rounds):
        for si, (b, n) in enumerate(shapes):
            load = os.getloadavg()[0]
            ticks = cpu_ticks()
            print("%sshape B=%d n=%d (load %.2f): ln-bench ..." % (
                "round %d/%d, " % (rnd + 1, args.rounds) if args.rounds > 1 else "", b, n, load),
                end="", flush=True)
            lb = run_bench(bench, args, ["--model", weights, "--batch", str(b), "--n", str(n),
                                         "--no-gemm"], env)
            s = lb["shapes"][0]
            if not args.no_check and rnd == 0:
                want = torch_flops(config, b, n)
                if abs(s["flops"]["total"] - want) > 1e-6 * want:
                    sys.exit("compare.py: ln-bench counts %.6g FLOPs for B=%d n=%d, FlopCounterMode "
                             "of the reference %.6g" % (s["flops"]["total"], b, n, want))
            print(" %.1f ms; torch reference and sdpa, taking turns ..." % s["encode_device_ms"],
                  end="", flush=True)
            x = torch.rand(b, n, d, device=device) * 2 - 1
            use_compiled = compiled is not None and (compile_shapes is None or (b, n) in compile_shapes)
            models = [model, sdpa] + ([compiled] if use_compiled else [])
            try:
                res = time_torch(models, x, args.repeats,
                                 max(args.warmup, 2 if use_compiled else 0), device)
            except Exception as e:  # a torch.compile failure shows up at the first call
                if not use_compiled:
                    raise
                print(" torch.compile failed (%r); without it ..." % (e,), end="", flush=True)
                compiled = None
                res = time_torch([model, sdpa], x, args.repeats, args.warmup, device)
            tr, ts, tc = res[0], res[1], res[2] if len(res) > 2 else None
            print(" %.1f ms; sdpa %.1f ms%s" % (tr["ms"], ts["ms"],
                                               "; compiled %.1f ms" % tc["ms"] if tc else ""), end="")
            print(flush=True)
            one = {"ln_ms": s["encode_device_ms"], "ref_ms": tr["ms"], "sdpa_ms": ts["ms"],
                   "compiled_ms": tc["ms"] if tc else None,
                   "steal_pct": steal_pct(ticks, cpu_ticks())}
            if rnd == 0:
                rows.append({"batch": b, "n": n, "loadavg_1min": [load, os.getloadavg()[0]],
                             "steal_pct": one["steal_pct"], "ln_bench": s,
                             "torch_reference": tr, "torch_sdpa": ts,
                             "torch_compiled_sdpa": tc, "ln_bench_device": lb["device"],
                             "rounds": []})
            r = rows[si]
            r["rounds"].append(one)
            r["loadavg_1min"][1] = max(r["loadavg_1min"][1], os.getloadavg()[0])
            del x
    for r in rows:
        rr = r["rounds"]
        r["ratio_ref"] = [q["ln_ms"] / q["ref_ms"] for q in rr]
        r["ratio_sdpa"] = [q["ln_ms"] / q["sdpa_ms"] for q in rr]
        steals = [q["steal_pct"] for q in rr if q["steal_pct"] is not None]
        r["steal_pct"] = statistics.median(steals) if steals else None

    gemm = None
    if not args.no_gemm and shapes:
        bs = sorted({b for b, _ in shapes})
        ns = sorted({n for _, n in shapes})
        extra = ["--no-model", "--model", weights, "--batch", ",".join(map(str, bs)),
                 "--n", ",".join(map(str, ns))]
        missing = [(b, n) for b in bs for n in ns if (b, n) not in shapes]
        if missing:
            extra += ["--skip", ",".join("%dx%d" % s for s in missing)]
        gemm_rounds = []
        for rnd in range(args.rounds):
            print("%sGEMMs: ln-bench (CLBlast) ..." % (
                "round %d/%d, " % (rnd + 1, args.rounds) if args.rounds > 1 else ""),
                end="", flush=True)
            lb = run_bench(bench, args, extra, env)
            lg = lb["gemm"]
            shapes_g = [{k: g[k] for k in ("m", "n", "k", "batch", "stream_calls")} for g in lg]
            if cuda:
                print(" torch.matmul fp32 (TF32 off) ...", flush=True)
                other = {"gemms": torch_gemms(shapes_g, args, device), "name": "torch.matmul fp32"}
            else:
                print(" numpy (OpenBLAS, %s unset) ..." % " and ".join(OPENBLAS_VARS), flush=True)
                other = numpy_gemms(shapes_g, args)
                if other:
                    other["name"] = "numpy"
            gemm_rounds.append({"ln_bench": lg, "other": other, "launch_us": lb.get("launch_us")})
        gemm = dict(gemm_rounds[0])
        gemm["rounds"] = gemm_rounds
        if all(g["other"] for g in gemm_rounds):
            gemm["ratio_rounds"] = [[g["ln_bench"][i]["ms"] / g["other"]["gemms"][i]["ms"]
                                     for g in gemm_rounds] for i in range(len(gemm["ln_bench"]))]
            gemm["stream_ratio_rounds"] = [
                [g["ln_bench"][i]["stream_ms"] / g["other"]["gemms"][i]["stream_ms"]
                 for g in gemm_rounds] for i in range(len(gemm["ln_bench"]))]

    # ---------------------------------------------------------------- tables
    dev = rows[0]["ln_bench_device"]["name"] if rows else "?"
    print("\nLN encoder forward, default config unless --config; median ms of %d after %d warm-up%s"
          % (args.repeats, args.warmup,
             "; each figure the median over %d rounds, each ratio the median of the rounds' "
             "ratios" % args.rounds if args.rounds > 1 else ""))
    print("ln-cl on %s; PyTorch %s eager float32 on %s" % (
        dev, torch.__version__, env_info["cuda_name"] or "CPU (%d threads)" % torch.get_num_threads()))
    hdr = ("%3s %5s %8s %10s %10s %10s %10s %10s %8s %8s %9s %9s %6s %6s" % (
        "B", "n", "GFLOP", "ln-cl dev", "ln-cl enc", "torch ref", "torch sdpa", "compiled",
        "dev/ref", "dev/sdpa", "ln GF/s", "ln MiB", "load", "steal%"))
    print(hdr)
    med = statistics.median
    for r in rows:
        s, rr = r["ln_bench"], r["rounds"]
        steal = r["steal_pct"]
        comp = [q["compiled_ms"] for q in rr if q["compiled_ms"] is not None]
        ln_ms = med([q["ln_ms"] for q in rr])
        print("%3d %5d %8.2f %10.2f %10.2f %10.2f %10.2f %10s %8.2f %8.2f %9.2f %9.1f %6.1f %6s" % (
            r["batch"], r["n"], s["flops"]["total"] * 1e-9, ln_ms, s["encode_ms"],
            med([q["ref_ms"] for q in rr]), med([q["sdpa_ms"] for q in rr]),
            fmt(med(comp) if comp else None), med(r["ratio_ref"]), med(r["ratio_sdpa"]),
            s["flops"]["total"] * 1e-6 / ln_ms, s["peak_device_bytes"] / 2**20,
            max(r["loadavg_1min"]), "-" if steal is None else "%.0f" % steal))
    if args.rounds > 1:
        print("Ratios of each round (ln-cl / reference; ln-cl / sdpa), in round order:")
        for r in rows:
            print("%3d %5d  %s;  %s" % (r["batch"], r["n"],
                                        " ".join("%.2f" % v for v in r["ratio_ref"]),
                                        " ".join("%.2f" % v for v in r["ratio_sdpa"])))
    if cuda:
        print("torch peak MiB (reference / sdpa): " + ", ".join(
            "%dx%d %.0f/%.0f" % (r["batch"], r["n"], r["torch_reference"]["peak_bytes"] / 2**20,
                                 r["torch_sdpa"]["peak_bytes"] / 2**20) for r in rows))
    print("dev/ref, dev/sdpa: ln-cl encode_device time / PyTorch time (> 1: ln-cl slower);\n"
          "ln-cl enc: host arrays in and out, first round; GF/s from the dev column;\n"
          "load: 1-minute load average around the shape (> cores: other work shared the CPU);\n"
          "steal%: share of CPU time the hypervisor gave to other machines meanwhile (this\n"
          "machine's timings stretch by about that much, unevenly; median over rounds).")
    print("Minima of the same runs (steadier when the CPU is shared)%s:" % (
        ", first round" if args.rounds > 1 else ""))
    print("%3s %5s %10s %10s %10s %8s %8s" % ("B", "n", "ln-cl dev", "torch ref", "torch sdpa",
                                             "dev/ref", "dev/sdpa"))
    for r in rows:
        d_min = min(r["ln_bench"]["encode_device_runs_ms"])
        r_min, s_min = min(r["torch_reference"]["runs_ms"]), min(r["torch_sdpa"]["runs_ms"])
        print("%3d %5d %10.2f %10.2f %10.2f %8.2f %8.2f" % (r["batch"], r["n"], d_min, r_min, s_min,
                                                         d_min / r_min, d_min / s_min))

    print("\nWhere ln-cl's time goes (device ms of one serialised profiled forward%s)" % (
        ", first round" if args.rounds > 1 else ""))
    cats = ("gemm", "attention", "norms", "epilogues", "copies")
    print("%3s %5s " % ("B", "n") + " ".join("%11s" % c for c in cats) + "  %11s" % "gemm GF/s")
    for r in rows:
        p = r["ln_bench"]["profile"]
        gops = [o for o in p["ops"] if o["category"] == "gemm"]
        gf = sum(2.0 * o["m"] * o["n"] * o["k"] * o["batch"] * o["launches"] for o in gops)
        gms = sum(o["ms"] for o in gops)
        tot = sum(p["categories_ms"].values())
        print("%3d %5d " % (r["batch"], r["n"]) + " ".join(
            "%5.0f %4.1f%%" % (p["categories_ms"][c], 100 * p["categories_ms"][c] / tot)
            for c in cats) + "  %11.2f" % (gf / (gms * 1e6) if gms else float("nan")))

    if gemm:
        other = gemm["other"]
        name = other["name"] if other else "other"
        print("\nSGEMM C[m,n] = A[m,k] B (median ms): CLBlast via ln-cl, B stored as ln-cl runs it\n"
              "(W^T [k, n] for the model's Linears; for S = u u^T, u^T [k, n] on CPUs, u [n, k]\n"
              "elsewhere), vs %s" % name)
        if other and not cuda:
            was = other.get("unset") or {}
            print("numpy %s; %s; OpenBLAS as threadpoolctl reports it: %s" % (
                other.get("numpy"),
                ("unset for this run: " + ", ".join("%s=%s" % kv for kv in was.items()))
                if was else "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE were not set here",
                "; ".join("%s %s %s, %s threads" % (t.get("internal_api"), t.get("version"),
                                                    t.get("architecture"), t.get("num_threads"))
                          for t in other.get("threadpool", []))))
        launch = gemm.get("launch_us")
        if launch:
            print("ln-bench: a one-float kernel takes %.1f us with a finish after each, %.1f us "
                  "queued back to back" % (launch["with_finish"], launch["back_to_back"]))
        rounds_of = gemm.get("ratio_rounds")
        stream_of = gemm.get("stream_ratio_rounds")
        multi = rounds_of and args.rounds > 1
        print("%6s %6s %6s %5s %10s %9s %9s %10s %9s %9s %8s %8s %s %9s %9s %8s%s %s" % (
            "m", "n", "k", "batch", "CLBlast ms", "min", "GFLOP/s", name[:10] + " ms", "min",
            "GFLOP/s", "ratio", "min rat", " rounds rat" if multi else "", "str ms", "other str",
            "str rat", " rounds str" if multi else "", " used by"))
        nan = float("nan")
        for i, g in enumerate(gemm["ln_bench"]):
            o = other["gemms"][i] if other else {"ms": nan, "min_ms": nan, "gflops": nan,
                                                  "stream_ms": nan}
            print("%6d %6d %6d %5d %10.3f %9.3f %9.2f %10.3f %9.3f %9.2f %8.2f %8.2f %s %9.3f "
                  "%9.3f %8.2f%s  %s" % (
                      g["m"], g["n"], g["k"], g["batch"], g["ms"], g["min_ms"], g["gflops"],
                      o["ms"], o["min_ms"], o["gflops"], g["ms"] / o["ms"],
                      g["min_ms"] / o["min_ms"],
                      "%11.2f" % statistics.median(rounds_of[i]) if multi else "",
                      g["stream_ms"], o["stream_ms"], g["stream_ms"] / o["stream_ms"],
                      "%12.2f" % statistics.median(stream_of[i]) if multi else "", g["label"]))
        print("ratio: CLBlast time / %s time, one call and a finish each, of the medians and of\n"
              "the minima (the minimum is the steadier figure when other work shares the CPU),\n"
              "first round%s. str: per call with ln-bench's 'calls' calls back to back and one\n"
              "finish, as a forward queues its GEMMs; the same count of %s calls in a loop."
              % (name, "; rounds: the median of every round's ratio of medians" if multi else "",
                 name))
        for key, label, per_round in (("summary", "one call + finish", rounds_of),
                                      ("stream_summary", "back to back", stream_of)):
            if not per_round:
                continue
            per_shape = [statistics.median(v) for v in per_round]
            share = [1.0 / v for v in per_shape]  # speed as a share of the other's
            print("Summary over the %d GEMM shapes (median of rounds per shape), %s: CLBlast's "
                  "speed is %.2fx %s's at the median shape (%.2f-%.2fx), >= 0.5x at %d of %d "
                  "shapes%s." % (
                      len(per_shape), label, statistics.median(share), name, min(share),
                      max(share), sum(v >= 0.5 for v in share), len(share),
                      "" if all(v >= 0.5 for v in share) else "; below: " + ", ".join(
                          "%dx%dx%d%s" % (g["m"], g["n"], g["k"],
                                          "" if g["batch"] == 1 else " (batch %d)" % g["batch"])
                          for g, v in zip(gemm["ln_bench"], share) if v < 0.5)))
            gemm[key] = {"median_speed_share": statistics.median(share),
                         "shapes_at_least_half": sum(v >= 0.5 for v in share),
                         "shapes": len(share)}

    env_info["loadavg_end"] = os.getloadavg()
    print("\nload average at start %.2f, at end %.2f (machine shared: expect noise)" % (
        env_info["loadavg_start"][0], env_info["loadavg_end"][0]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env_info, "checks": checks, "shapes": rows, "gemm": gemm,
                       "args": vars(args)}, f, indent=1)
        print("wrote " + args.out)


if __name__ == "__main__":
    main()
