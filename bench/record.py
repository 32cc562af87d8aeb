"""Run a benchmark command and keep what it printed as a JSON record for bench/RESULTS.md.

    python bench/record.py NAME -- python bench/throughput.py --config ecg --mode train,encode
    python bench/results.py                   # bench/RESULTS.md from bench/RESULTS.in.md and bench/records/*.json

The command runs from the repository root with its output shown as it comes.
When it exits with status 0, ``bench/records/NAME.json`` is written:

    {"name", "command", "date", "seconds", "commit", "dirty", "machine": {cpu, cores, memory_gib, load_avg},
     "versions": {python, jax, jaxlib, flax, optax, numpy, torch, keras, ...},
     "tables": [markdown table, ...], "stdout": everything it printed}

``tables`` are the blocks of consecutive lines that start with ``|`` in what
the command printed, in order. A failed command writes nothing, so a record
always holds a complete run. The versions are those of the Python that runs
this script (the benchmarks run on the same interpreter: ``python`` in the
command is replaced by it).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "bench" / "records"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "keras", "scikit-learn", "stumpy", "pyod")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        return round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        return None


def machine() -> dict:
    """The machine a record was made on: CPU model, cores, memory, load average at the start."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "load_avg": [round(v, 1) for v in os.getloadavg()]}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_state() -> tuple[str | None, bool]:
    """(commit, dirty) of the checkout the benchmark ran on."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, False


def tables(text: str) -> list[str]:
    """The markdown tables in ``text``: runs of consecutive lines starting with ``|``."""
    found, block = [], []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append(line.strip())
        elif block:
            found.append("\n".join(block))
            block = []
    return found


def run(name: str, command: list[str]) -> dict:
    """Run ``command`` from the repository root, echoing its output; the record of a successful run."""
    if not command:
        raise SystemExit("no command to record: give it after --, e.g. record.py ecg -- python bench/throughput.py")
    shown = " ".join(command)
    argv = [sys.executable if command[0] in ("python", "python3") else command[0], *command[1:]]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start, info, date = time.perf_counter(), machine(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit, dirty = git_state()
    lines = []
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
    if proc.returncode != 0:
        raise SystemExit(f"{shown!r} exited with status {proc.returncode}: no record written")
    out = "".join(lines)
    return {"name": name, "command": shown, "date": date, "seconds": round(time.perf_counter() - start, 1),
            "commit": commit, "dirty": dirty, "machine": info, "versions": versions(), "tables": tables(out),
            "stdout": out}


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], usage="record.py NAME [--dir DIR] -- COMMAND ...")
    p.add_argument("name", help="the record's name: bench/records/NAME.json, {{NAME}} in bench/RESULTS.in.md")
    p.add_argument("--dir", default=str(RECORDS), help="where records go (default bench/records)")
    opts = p.parse_args(args[:cut])
    rec = run(opts.name, args[cut + 1:])
    if not rec["tables"]:
        raise SystemExit(f"{rec['command']!r} printed no markdown table: nothing to record")
    path = Path(opts.dir) / f"{opts.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"# recorded {len(rec['tables'])} table(s) in {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
