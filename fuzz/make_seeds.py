#!/usr/bin/env python3
"""make_seeds.py: writes the generated part of the fuzz seed corpora in
fuzz/corpus/<harness>/ (small valid inputs; standard library only, so it
runs anywhere). The rest of the seeds are copies of tests/data fixtures
(io_*.npy, io_tiny_ln.safetensors, io_dtypes.safetensors), also made here.
The output is committed; rerun after a format change:

    python3 fuzz/make_seeds.py
"""
import json
import os
import random
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def out(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes) in data order."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def model_tensors(cfg, rng):
    """Every tensor SPEC.md "Weights file" names for cfg (src/config.c)."""
    t = []

    def add(name, *shape):
        n = 1
        for s in shape:
            n *= s
        t.append((name, "F32", shape, f32([rng.uniform(-1, 1) for _ in range(n)])))

    def linear(prefix, o, i):
        add(prefix + ".weight", o, i)
        add(prefix + ".bias", o)

    d, w_all = cfg["d_model"], cfg["scales"]
    linear("pos.position_mlp.0", cfg["pos_hidden"], 1)
    linear("pos.position_mlp.2", d, cfg["pos_hidden"])
    for l in range(cfg["n_layers"]):
        for k, w in enumerate(w_all):
            p = "layers.%d.processors.%d" % (l, k)
            linear("layers.%d.projections.%d" % (l, k), w, d)
            for n in ("ln1", "ln2"):
                add("%s.%s.weight" % (p, n), w)
                add("%s.%s.bias" % (p, n), w)
            for a in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear("%s.attn.%s" % (p, a), w, w)
            add(p + ".attn.temperature", w // cfg["head_dim"])
            linear(p + ".ffn.0", cfg["ffn_mult"] * w, w)
            linear(p + ".ffn.2", w, cfg["ffn_mult"] * w)
        linear("layers.%d.fusion" % l, d, sum(w_all))
    add("final_norm.weight", d)
    add("final_norm.bias", d)
    return t


def main():
    rng = random.Random(7)
    for h in ("safetensors", "npy", "config", "tune_cache"):
        shutil.rmtree(os.path.join(CORPUS, h), ignore_errors=True)

    # safetensors: fixtures, plus a minimal model with and without metadata
    # (the metadata path and the inference path), and an ln-run input.
    data = os.path.join(ROOT, "tests", "data")
    for name in ("io_tiny_ln.safetensors", "io_dtypes.safetensors"):
        with open(os.path.join(data, name), "rb") as f:
            out("safetensors", name, f.read())
    cfg = {"d_model": 4, "pos_hidden": 2, "scales": [2, 4], "head_dim": 2, "ffn_mult": 1,
           "n_layers": 1, "ln_eps": 1e-5}
    tensors = model_tensors(cfg, rng)
    out("safetensors", "model_min_meta.safetensors",
        safetensors(tensors, {"ln_config": json.dumps(cfg)}))
    out("safetensors", "model_min_inferred.safetensors", safetensors(tensors))
    x = [rng.uniform(-1, 1) for _ in range(2 * 3 * 4)]
    out("safetensors", "input_x_pos_len.safetensors", safetensors([
        ("x", "F32", (2, 3, 4), f32(x)),
        ("positions", "F32", (2, 3), f32([0, 0.5, 1, 0, 0.25, 0.5])),
        ("lengths", "I64", (2,), struct.pack("<2q", 3, 2)),
    ]))
    out("safetensors", "halves.safetensors", safetensors([
        ("a", "F16", (2,), struct.pack("<2H", 0x3c00, 0x8001)),
        ("b", "BF16", (1, 2), struct.pack("<2H", 0x3f80, 0x7f80)),
        ("c", "I32", (), struct.pack("<i", -5)),
        ("z", "F32", (0, 3), b""),
    ], {"note": "dtypes"}))

    # npy: the reader's fixtures (1.0 and 2.0 headers, f4 and f8, refusals).
    for name in sorted(os.listdir(data)):
        if name.startswith("io_") and name.endswith(".npy"):
            with open(os.path.join(data, name), "rb") as f:
                out("npy", name, f.read())

    # config: the ln_config metadata as PyTorch's LNEncoder.config_json()
    # writes it, SPEC's defaults, partial objects.
    out("config", "spec_default.json", json.dumps(
        {"d_model": 384, "pos_hidden": 64, "scales": [64, 128, 256, 384], "head_dim": 32,
         "ffn_mult": 4, "n_layers": 1, "ln_eps": 1e-05}))
    out("config", "golden_tiny.json", json.dumps(
        {"d_model": 64, "pos_hidden": 16, "scales": [16, 32, 64], "head_dim": 16,
         "ffn_mult": 2, "n_layers": 2, "ln_eps": 1e-05}))
    out("config", "partial.json", '{"d_model": 96, "scales": [32, 96], "n_layers": 3}')
    out("config", "eps_only.json", '{"ln_eps": 1e-6, "unknown_key": [1, {"x": null}]}')
    out("config", "empty_object.json", "{}")

    # tune_cache: files for the fuzz device of fuzz/targets.c; the target
    # puts this build's kernel hash, CLBlast version and tuner version where
    # the @...@ placeholders stand ("@TUNER_VERSION@" with its quotes).
    key = {"platform_name": "Fuzz Platform", "platform_version": "OpenCL 1.2 fuzz",
           "device_name": "fuzz-device", "driver_version": "1.0", "compute_units": 2,
           "kernels_hash": "@KERNELS_HASH@", "tuner_version": "@TUNER_VERSION@",
           "clblast_version": "@CLBLAST_VERSION@"}
    entries = [
        {"kernel": "layernorm", "shape": "B1-n1024", "params": {"wg_layernorm": 128},
         "default_us": 50.5, "tuned_us": 40.25},
        {"kernel": "elementwise", "shape": "B4-n256", "params": {"wg_elementwise": 64},
         "default_us": 12, "tuned_us": 11},
        {"kernel": "attention", "shape": "B1-n4096",
         "params": {"attn_mode": 2, "attn_tile_q": 16, "attn_tile_k": 64},
         "default_us": 812.5, "tuned_us": 640.2},
        {"kernel": "attention", "shape": "B2-n128", "params": {"attn_mode": 1},
         "default_us": 30, "tuned_us": 29},
        {"kernel": "clblast-Xgemm", "shape": "B1-n256",
         "params": {"GEMMK": 0, "KREG": 1, "KWG": 16, "KWI": 2, "MDIMA": 8, "MDIMC": 8,
                    "MWG": 32, "NDIMB": 8, "NDIMC": 8, "NWG": 32, "SA": 0, "SB": 0,
                    "STRM": 0, "STRN": 0, "VWM": 1, "VWN": 1},
         "default_us": 900, "tuned_us": 700},
        {"kernel": "clblast-XgemmDirect", "shape": "B1-n64",
         "params": {"KWID": 2, "MDIMAD": 8, "MDIMCD": 8, "NDIMBD": 8, "NDIMCD": 8, "PADA": 1,
                    "PADB": 1, "VWMD": 1, "VWND": 1, "WGD": 16},
         "default_us": 90, "tuned_us": 80},
        {"kernel": "clblast-GemmRoutine", "shape": "B1-n1024",
         "params": {"XGEMM_MIN_INDIRECT_SIZE": 512}, "default_us": 10, "tuned_us": 9},
    ]
    doc = {"format": "ln-cl-tuning", "format_version": 1, "key": key, "entries": entries}
    out("tune_cache", "valid.json", json.dumps(doc, indent=2) + "\n")
    out("tune_cache", "valid_compact.json", json.dumps(
        {"format": "ln-cl-tuning", "format_version": 1, "key": key, "entries": entries[:1]},
        separators=(",", ":")))
    out("tune_cache", "no_entries.json", json.dumps(dict(doc, entries=[])))
    stale = dict(key, driver_version="0.9")
    out("tune_cache", "stale_driver.json", json.dumps(dict(doc, key=stale)))


if __name__ == "__main__":
    main()
