"""Data files shipped inside the package (``data/builtin/``, source, licence
and checksum in its README.md), so that every example runs on a fresh machine.

    path = builtin_file("ecg5000")                  # ECG5000_TRAIN.txt, checksum verified
    files = ecg5000_files(seed=0)                   # name -> bytes: it, and a stratified 60 / 40 split
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from jax_lstm_ae.data.core import DataError

FOLDER = Path(__file__).resolve().parent / "builtin"
# name -> (file, sha256)
BUILTIN = {
    "ecg5000": ("ECG5000_TRAIN.txt", "64a73c47d5c785c9e87f2e07c71a985f451bd28e1120bfbdb91400401a09ec87"),
}


def builtin_file(name: str) -> Path:
    """The shipped file ``name`` (one of ``BUILTIN``), its checksum verified."""
    if name not in BUILTIN:
        raise DataError(f"no built-in data set {name!r}; choose one of {', '.join(BUILTIN)}")
    file, sha = BUILTIN[name]
    path = FOLDER / file
    if not path.is_file():
        raise DataError(f"{path}: the package's copy of {name} is missing; reinstall jax_lstm_ae")
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
        raise DataError(f"{path}: the package's copy of {name} is damaged (sha256 differs); reinstall jax_lstm_ae")
    return path


def stratified_split(labels, fractions=(0.6, 0.4), seed: int = 0) -> list[np.ndarray]:
    """Row indices [n] cut into parts of ``fractions`` within every class:
    each class (in sorted order) is permuted by one generator seeded with
    ``seed`` and cut at the rounded fractions; every part comes back sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.cumsum([int(round(f * len(idx))) for f in fractions[:-1]])
        for k, piece in enumerate(np.split(idx, cuts)):
            parts[k].append(piece)
    return [np.sort(np.concatenate(p)) for p in parts]


def ecg5000_files(seed: int = 0) -> dict[str, bytes]:
    """The bytes of ``ECG5000_TRAIN.txt`` and of its stratified 60 / 40 split
    (``train.txt``, ``test.txt``: the same UCR layout, rows in file order), by
    file name; the caller writes them (the command line: atomically, checked)."""
    path = builtin_file("ecg5000")
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    labels = np.array([float(r.split()[0]) for r in rows])
    train, test = stratified_split(labels, (0.6, 0.4), seed)
    return {
        "ECG5000_TRAIN.txt": path.read_bytes(),
        "train.txt": ("\n".join(rows[i] for i in train) + "\n").encode(),
        "test.txt": ("\n".join(rows[i] for i in test) + "\n").encode(),
    }
