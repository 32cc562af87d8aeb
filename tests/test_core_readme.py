"""The README's example is examples/quickstart.py, and it runs as printed."""

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_is_the_quickstart_and_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Fifteen lines.*?```python\n(.*?)```", readme, re.S).group(1)
    source = (ROOT / "examples" / "quickstart.py").read_text()
    assert block == source
    assert len(source.strip().splitlines()) <= 16
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "latent (8, 16)" in out and "reconstruction (8, 50, 3)" in out
