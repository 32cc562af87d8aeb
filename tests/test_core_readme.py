"""The README's first example is examples/quickstart.py, and it runs as printed."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_is_the_quickstart_and_runs():
    """In a fresh process, as a user runs it: ``use_all_cores`` must come before JAX starts."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Example: research code with the jitted `train_step`.*?```python\n(.*?)```", readme, re.S).group(1)
    source = (ROOT / "examples" / "quickstart.py").read_text()
    assert block == source
    assert len(source.strip().splitlines()) <= 24
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "latent (8, 16)" in res.stdout and "reconstruction (8, 50, 3)" in res.stdout
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert f"devices {cores} train loss" in res.stdout, res.stdout
