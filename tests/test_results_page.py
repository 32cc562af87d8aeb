"""bench/RESULTS.md is exactly what bench/results.py renders from the template and the records."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


results, record = _load("results"), _load("record")


def test_results_page_is_regenerated():
    assert (ROOT / "bench" / "RESULTS.md").read_text() == results.render(), "run python bench/results.py"


def test_record_finds_tables_in_order():
    text = "# head\n| a | b |\n| --- | --- |\n| 1 | 2 |\nprose\n  | c |\n| --- |\n"
    assert record.tables(text) == ["| a | b |\n| --- | --- |\n| 1 | 2 |", "| c |\n| --- |"]


def _rec(name, tables):
    return {"name": name, "command": f"python bench/{name}.py", "date": "2026-01-01 00:00 UTC", "seconds": 3.2,
            "commit": "abc1234", "dirty": False, "machine": {"cpu": "CPU", "cores": 2, "load_avg": [0.5, 0, 0]},
            "versions": {"python": "3.11", "jax": "0.1"}, "tables": tables, "stdout": ""}


def test_render_places_records_and_picks_tables(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x.json").write_text(json.dumps(_rec("x", ["| t1 |", "| t2 |", "| t3 |"])))
    (tmp_path / "t.md").write_text("# Page\n\n{{x:1,3}}\n\nafter\n")
    page = results.render(tmp_path / "t.md", tmp_path / "r")
    assert "python bench/x.py" in page and "| t1 |" in page and "| t3 |" in page and "| t2 |" not in page
    assert "commit abc1234" in page and "load average 0.5" in page and "jax 0.1" in page
    assert page.index("# Page") < page.index("| t1 |") < page.index("after")


@pytest.mark.parametrize("template, err", [("{{y}}\n", "no record 'y'"), ("text\n", "not on the page"),
                                           ("{{x:4}}\n", "has 3 table(s), not 4")])
def test_render_refuses_missing_unused_and_out_of_range(tmp_path, template, err):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x.json").write_text(json.dumps(_rec("x", ["| a |", "| b |", "| c |"])))
    (tmp_path / "t.md").write_text(template)
    with pytest.raises(SystemExit, match=err.replace("(", r"\(").replace(")", r"\)")):
        results.render(tmp_path / "t.md", tmp_path / "r")


def test_record_runs_a_command_and_refuses_a_failed_one(tmp_path):
    rec = record.run("t", ["python", "-c", "print('| a |'); print('| - |'); print('x')"])
    assert rec["tables"] == ["| a |\n| - |"] and rec["command"].startswith("python -c")
    assert rec["versions"]["python"] and rec["machine"]["cores"] >= 1
    with pytest.raises(SystemExit, match="exited with status 3"):
        record.run("t", ["python", "-c", "import sys; sys.exit(3)"])
