#!/usr/bin/env python3
"""make_io_fixtures.py: owns tests/data/io_*.safetensors and tests/data/io_*.npy,
tiny files written by the real Python writers (safetensors.torch, numpy), so
that tests/test_safetensors.c and tests/test_npy.c check the C readers against
what users' tools produce, not only against bytes the tests craft themselves.
CI does not run this script; the files are committed.

io_dtypes.safetensors (metadata {"note": "io fixture"}):
  f16  [6]    F16  = [1, -2, 0.5, 65504, 2**-24, inf]
  bf16 [4]    BF16 = [1, -3, 3.140625, -0.0]
  f32  [1, 2] F32  = [[1.5, -2.25]]
  i32  [2, 2] I32  = [[1, -2], [3, 2**31 - 1]]
  i64  [3]    I64  = [7, -4, 2**40]
io_tiny_ln.safetensors: LNEncoder(TINY).state_dict() saved as users save
  models, safetensors.torch.save_file(..., metadata={"ln_config": json}), with
  TINY = d_model 8, pos_hidden 4, scales [4, 8], head_dim 4, ffn_mult 2,
  n_layers 2, ln_eps 1e-6 (not the default, so tests see it come through)
io_f4_2x3.npy      '<f4' (2, 3)    = arange(6) / 4 - 0.5
io_f4_1d.npy       '<f4' (5,)      = [0.25, -1, 3, 1e-8, 7]
io_f4_v2_2x1x3.npy '<f4' (2, 1, 3) = arange(6) * 1.5, format version 2.0
io_f8_3.npy        '<f8' (3,)      = [0.1, -2.5, 1e300]
io_f4_fortran.npy  '<f4' (2, 3), fortran_order True
io_f4_be.npy       '>f4' (2, 3)

    python3 tests/data/make_io_fixtures.py    # deterministic
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, os.environ.get("LN_REFERENCE_DIR", str(REPO.parent / "shared" / "reference")))
from ln_reference import LNEncoder  # noqa: E402

TINY = {"d_model": 8, "pos_hidden": 4, "scales": [4, 8], "head_dim": 4, "ffn_mult": 2,
        "n_layers": 2, "ln_eps": 1e-6}


def main():
    save_file(
        {
            "f16": torch.tensor([1, -2, 0.5, 65504, 2.0**-24, float("inf")], dtype=torch.float16),
            "bf16": torch.tensor([1, -3, 3.140625, -0.0], dtype=torch.bfloat16),
            "f32": torch.tensor([[1.5, -2.25]], dtype=torch.float32),
            "i32": torch.tensor([[1, -2], [3, 2**31 - 1]], dtype=torch.int32),
            "i64": torch.tensor([7, -4, 2**40], dtype=torch.int64),
        },
        str(HERE / "io_dtypes.safetensors"),
        metadata={"note": "io fixture"},
    )
    torch.manual_seed(7)
    model = LNEncoder(TINY)
    save_file(model.state_dict(), str(HERE / "io_tiny_ln.safetensors"),
              metadata={"ln_config": json.dumps(TINY)})
    a = (np.arange(6, dtype=np.float32) / 4 - 0.5).reshape(2, 3)
    np.save(HERE / "io_f4_2x3.npy", a)
    np.save(HERE / "io_f4_1d.npy", np.array([0.25, -1, 3, 1e-8, 7], dtype="<f4"))
    with open(HERE / "io_f4_v2_2x1x3.npy", "wb") as f:
        np.lib.format.write_array(f, (np.arange(6, dtype="<f4") * 1.5).reshape(2, 1, 3), version=(2, 0))
    np.save(HERE / "io_f8_3.npy", np.array([0.1, -2.5, 1e300], dtype="<f8"))
    np.save(HERE / "io_f4_fortran.npy", np.asfortranarray(a))
    np.save(HERE / "io_f4_be.npy", a.astype(">f4"))


if __name__ == "__main__":
    main()
