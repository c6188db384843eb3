#!/usr/bin/env python3
"""Baseline for `prewarm bench-kmeans`: scikit-learn on the same raw f64 matrix.
Usage: python3 sklearn_kmeans.py FILE.f64 [COLUMNS] [K]. Needs numpy and scikit-learn."""
import sys, time
import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

path = sys.argv[1]
columns = int(sys.argv[2]) if len(sys.argv) > 2 else 16
k = int(sys.argv[3]) if len(sys.argv) > 3 else 16
X = np.fromfile(path, dtype="<f8").reshape(-1, columns)
for name, model in [
    ("KMeans(n_init=1, lloyd)", KMeans(n_clusters=k, n_init=1, algorithm="lloyd", random_state=0)),
    ("MiniBatchKMeans", MiniBatchKMeans(n_clusters=k, random_state=0)),
]:
    t = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - t
    inertia = ((X - model.cluster_centers_[model.predict(X)]) ** 2).sum()
    print(f"  scikit-learn {name:<24} {seconds:7.2f} s  inertia {inertia:.0f}")
