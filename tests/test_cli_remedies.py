"""Every user error ends with what to do: a representative table of the
messages of cli/, data/, the checkpoints, the runner and apps/, driven
in-process through the CLI's entry function. Each case: exit code 2, one
line on stderr, no traceback, and a remedy clause (``; give ...``,
``; use ...``, ``: fix ...``) after the problem."""

import json
import re

import numpy as np
import pytest

from jax_lstm_ae.cli.main import main

TINY = ["--embedding-dim", "4", "--batch-size", "8", "--quiet"]
VERBS = ("use", "give", "pass", "choose", "drop", "train", "check", "write", "restore", "wait", "continue", "fix",
         "install", "set", "see", "move", "keep", "lower", "resume", "put", "end", "delete", "free", "rescale",
         "reshape", "finish")
REMEDY = re.compile(r"(?:; |: |, or |\bor )(?:e\.g\. )?(" + "|".join(VERBS) + r")\b")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("remedies")
    rng = np.random.default_rng(0)
    x = np.sin(0.5 * np.arange(12)[None, :, None] + rng.uniform(0, 6, (40, 1, 2))).astype(np.float32)
    lengths = rng.integers(6, 13, 40)
    np.savez(d / "good.npz", x=x, lengths=lengths)
    np.savez(d / "labelled.npz", x=x, lengths=lengths, labels=np.arange(40) % 2)
    np.savez(d / "one_class.npz", x=x, lengths=lengths, labels=np.zeros(40, int))
    np.savez(d / "new_class.npz", x=x[:6], lengths=lengths[:6], labels=np.arange(6) % 3)
    np.savez(d / "len_frac.npz", x=x, lengths=np.full(40, 7.5))
    np.savetxt(d / "zeros.txt", np.zeros(40), fmt="%d")
    (d / "labels_bad.txt").write_text("0\n1\nx\n")
    (d / "ragged.txt").write_text("1 2 3\n4 5\n")
    (d / "header.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    np.savetxt(d / "series.txt", np.sin(np.arange(400) / 5.0))
    ts = "@problemName p\n@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength 3\n"
    (d / "flag.ts").write_text(ts.replace("@equalLength true", "@equalLength maybe") + "@classLabel true a b\n@data\n"
                               "1,2,3:1,2,3:a\n")
    (d / "late.ts").write_text(ts + "@classLabel true a b\n@data\n1,2,3:1,2,3:a\n@timeStamps false\n")
    (d / "short.ts").write_text(ts + "@classLabel true a b\n@data\n1,2:1,2:a\n")
    assert main(["train", "--data", str(d / "good.npz"), "--out", str(d / "run"), "--epochs", "1", *TINY]) == 0
    for name, keep in (("run_trunc", 100), ("run_nockpt", 0)):
        (d / name).mkdir()
        (d / name / "config.json").write_bytes((d / "run" / "config.json").read_bytes())
        if keep:
            (d / name / "checkpoint.msgpack").write_bytes((d / "run" / "checkpoint.msgpack").read_bytes()[:keep])
    return d


T = "train --data {d}/good.npz --out {o}/run --embedding-dim 4 --quiet"
DET = "detect --run {d}/run --out {o}/s.csv"
PROBE = "probe --run {d}/run --data {d}/labelled.npz"
ENC = "encode --run {d}/run --out {o}/z.npy"
CASES = [
    # the train command's flags and data
    (T + " --hidden 8,-1", "layer sizes must be positive"),
    (T + " --hidden 8,x", "expected layer sizes separated by commas"),
    (T + " --devices many", "--devices takes a positive number"),
    (T + " --normal-class 1", "--normal-class needs labels"),
    (T.replace("good", "labelled") + " --normal-class 7", "--normal-class 7 matches no label"),
    ("train --train-rows 0:100 --out {o}/run", "needs one long series to train on; pass --data"),
    ("train --data {d}/series.txt --train-rows 5 --out {o}/run", "must look like A:B"),
    (T + " --hidden 1000000", "training needs about"),
    (T + " --head sigmoid", "--head sigmoid needs data in {0, 1}"),
    ("train --out {d}/run --resume --epochs 1", "has already trained 1 epochs"),
    # a long series trains the series pipeline (with --train-rows or without): it reads no labels
    (T.replace("good.npz", "series.txt") + " --format series --normal-class 1", "--normal-class does not apply to one long series"),
    # data files
    (T.replace("good.npz", "len_frac.npz"), "lengths must be whole numbers between 0 and T=12"),
    (T.replace("good.npz", "ragged.txt"), "every row needs the same number of columns"),
    (T.replace("good.npz", "header.csv") + " --format long --id-column a --columns b,zz", "names column 'zz' but its header is"),
    (T.replace("good.npz", "flag.ts"), "@equalLength must be true or false"),
    (T.replace("good.npz", "late.ts"), "header @timeStamps after @data"),
    (T.replace("good.npz", "short.ts"), "has 2 steps but @seriesLength says 3"),
    # runs
    (ENC.replace("{d}/run", "{d}/run_trunc"), "cannot read the checkpoint"),
    (ENC.replace("{d}/run", "{d}/run_nockpt"), "no checkpoint here"),
    ("info --run {o}/nothing", "no such run directory"),
    # detect and probe
    (DET + " --threshold fbeta", "--threshold fbeta needs labels"),
    (DET + " --threshold bogus", "--threshold must be fbeta, contamination, meanstd, auto or a finite number"),
    (DET + " --labels {d}/zeros.txt --threshold fbeta", "needs at least one anomaly (label 1)"),
    (DET + " --labels {d}/labels_bad.txt", "labels must be 0 or 1, one per line"),
    ("probe --run {d}/run --data {d}/good.npz", "has no labels"),
    (PROBE.replace("labelled", "one_class"), "a probe needs at least two classes"),
    (PROBE + " --test-data {d}/good.npz", "good.npz has no labels; give labelled --test-data"),
    (PROBE + " --test-data {d}/new_class.npz", "--test-data holds classes [2]"),
]


@pytest.mark.parametrize("line, words", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_each_error_says_what_to_do(d, tmp_path, capsys, line, words):
    argv = [a.replace("{d}", str(d)).replace("{o}", str(tmp_path)) for a in line.split()]
    code = main(argv)
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    msg = lines[0]
    assert msg.startswith("jax-lstm-ae") and "internal error" not in msg, msg
    assert words in msg, msg
    problem, sep, rest = msg.partition("; ")
    assert sep and REMEDY.search("; " + rest), f"no remedy after the problem: {msg}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing created"
