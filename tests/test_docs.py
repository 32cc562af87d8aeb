"""The documentation runs: every ```bash and ```python block of README.md and
docs/**/*.md is executed, each in a temporary folder of its own, and the site
builds with `mkdocs build --strict`.

A block runs with this checkout's package (PYTHONPATH) and the running
interpreter's environment first on PATH (so `jax-lstm-ae` and `python` are the
venv's), in an empty folder: it must make its own data (`jax-lstm-ae data
ecg5000 --out DIR`, `la.synthetic(...)`) and write only there. A block that
must not run carries the line `<!-- no-run: REASON -->` right above its fence;
the reason is required and stays visible in the Markdown source. ```text
blocks (printed output, layouts) are never run; a fence without a language is
refused, so a command block cannot slip through untested.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = {"bash", "python"}
LANGUAGES = RUN | {"text", "toml", "yaml"}
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<reason>[^>]*?)\s*-->\s*$")
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    lang: str
    body: str
    no_run: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NO_RUN.search(before)
        body = "\n".join(ln[len(m.group("indent")):] for ln in m.group("body").splitlines()) + "\n"
        out.append(Block(path, line, m.group("info").strip().split(" ")[0], body,
                         marker.group("reason") if marker else None))
    return out


ALL_BLOCKS = [b for f in doc_files() for b in blocks_of(f)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang in RUN and b.no_run is None]


def env_for_blocks() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["MPLBACKEND"] = "Agg"
    return env


def test_every_fence_names_a_known_language_and_markers_give_a_reason():
    bad = [f"{b.id}: ```{b.lang}" for b in ALL_BLOCKS if b.lang not in LANGUAGES]
    assert not bad, f"give these fences a language ({', '.join(sorted(LANGUAGES))}): {bad}"
    for f in doc_files():
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.lstrip().startswith("<!--") and "no-run" in line:
                m = NO_RUN.search(line)
                assert m and m.group("reason"), f"{f.relative_to(ROOT)}:{n}: write `<!-- no-run: REASON -->`"
    assert len(RUNNABLE) >= 10, "the harness found too few blocks: is the fence pattern still right?"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path):
    script = tmp_path / ("block.sh" if block.lang == "bash" else "block.py")
    script.write_text(block.body)
    cmd = ["bash", "-e", "-o", "pipefail", script.name] if block.lang == "bash" else [sys.executable, script.name]
    work = tmp_path / "work"
    work.mkdir()
    script.rename(work / script.name)
    res = subprocess.run(cmd, cwd=work, env=env_for_blocks(), capture_output=True, text=True,
                         timeout=BLOCK_TIMEOUT_S)
    assert res.returncode == 0, (f"{block.id} exited with {res.returncode}\n--- stdout\n{res.stdout[-3000:]}"
                                 f"\n--- stderr\n{res.stderr[-3000:]}")


def test_readme_is_short_and_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    first = next(b for b in blocks_of(ROOT / "README.md") if b.lang == "bash")
    assert "bash scripts/main.sh" in first.body and "bash scripts/test.sh" in first.body


def test_docs_site_builds_strict_without_a_jax_backend(tmp_path: Path):
    """`mkdocs build --strict`: no warning (broken link, unknown reference, bad docstring) passes. The CLI reference
    is rendered from the parser at build time; JAX_PLATFORMS names no real platform, so a build that started a JAX
    backend would fail."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_gen_files")
    env = {**env_for_blocks(), "JAX_PLATFORMS": "no_such_platform", "DISABLE_MKDOCS_2_WARNING": "true",
           "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    assert "WARNING" not in res.stderr.replace("WARNING: MkDocs", ""), res.stderr[-5000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for command in ("train", "encode", "reconstruct", "info", "detect", "probe", "data"):
        assert f"usage: jax-lstm-ae {command}" in cli
