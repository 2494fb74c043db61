#!/usr/bin/env python3
"""hnswlib (the C++ library, through its Python binding) on a Proxima dataset directory, with
the settings `proxima bench cache` uses, printing rows in the same Markdown table.

    python3 scripts/bench_hnswlib.py DATASET_DIR --sizes 10000,50000 [--m 16 --ef-construction 100 --ef 64]

One thread for build and search (hnswlib's set_num_threads(1)); inserts in batches of 1,000;
latency = one query per call (knn_query on one row), timed with perf_counter_ns; recall@10
against the exact top-10 of the first N base rows (cosine, computed here with numpy).
"""
import argparse
import os
import struct
import time

import hnswlib
import numpy as np


def read_fbin(path):
    with open(path, "rb") as f:
        rows, dim = struct.unpack("<II", f.read(8))
        return np.fromfile(f, dtype="<f4", count=rows * dim).reshape(rows, dim)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    base = read_fbin(os.path.join(a.dataset, "base.fbin"))
    queries = read_fbin(os.path.join(a.dataset, "queries.fbin"))
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    dim = base.shape[1]
    print(f"hnswlib {getattr(hnswlib, '__version__', '')}: {a.dataset} ({base.shape[0]} x {dim}, {queries.shape[0]} queries, cosine)")
    for n in [int(s) for s in a.sizes.split(",")]:
        n = min(n, base.shape[0])
        b = base[:n]
        truth = np.argsort(-(queries @ b.T), axis=1)[:, : a.k]
        index = hnswlib.Index(space="cosine", dim=dim)
        index.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.m, random_seed=100)
        index.set_num_threads(1)
        start = time.perf_counter()
        for i in range(0, n, 1000):
            index.add_items(b[i : i + 1000], np.arange(i, min(i + 1000, n)), num_threads=1)
        build = time.perf_counter() - start
        index.set_ef(a.ef)
        for q in queries[:50]:
            index.knn_query(q, k=a.k, num_threads=1)
        lat, hits = [], 0
        for qi, q in enumerate(queries):
            t = time.perf_counter_ns()
            labels, _ = index.knn_query(q, k=a.k, num_threads=1)
            lat.append((time.perf_counter_ns() - t) / 1e6)
            hits += len(set(labels[0].tolist()) & set(truth[qi].tolist()))
        lat.sort()
        p = lambda x: lat[round((len(lat) - 1) * x)]
        recall = hits / (a.k * len(queries))
        print(
            f"| hnswlib (Python binding) | {n} | {n / build:.0f} | {p(0.5):.3f} | {p(0.99):.3f} | "
            f"{len(lat) / (sum(lat) / 1e3):.0f} | {recall:.4f} | — | — | — |"
        )


if __name__ == "__main__":
    main()
