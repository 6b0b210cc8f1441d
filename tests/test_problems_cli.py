"""The `problems` command: a fixture path, the toy world, a bad spec."""

import json
from pathlib import Path

import pytest

from mlx_selfdistill.cli import main

FIX = Path(__file__).resolve().parent / "fixtures" / "problems"


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["problems", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_problems_on_a_fixture_path_json(capsys):
    code, out, err = _run(capsys, str(FIX / "livecodebench"), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["count"] == 3 and info["ids"] == ["lcb/1999A", "lcb/abc900_a", "lcb/9001"]
    assert info["test_types"] == {"stdio": 5, "call": 3}
    assert info["difficulty"] == {"easy": 1, "hard": 1, "medium": 1}
    assert info["styles"] == {"stdio": 2, "function": 1}


def test_problems_table_and_limit(capsys):
    code, out, err = _run(capsys, f"humaneval:{FIX / 'humaneval.jsonl'}", "--limit", "2")
    assert code == 0  # result tables go to stdout
    assert "HumanEval/0, HumanEval/1" in out and "HumanEval/2" not in out and "call: 8" in out


def test_problems_dump_roundtrips_as_jsonl(capsys, tmp_path):
    code, out, _ = _run(capsys, str(FIX / "apps_test.jsonl"), "--dump")
    assert code == 0
    dumped = tmp_path / "dump.jsonl"
    dumped.write_text(out)
    code, out, _ = _run(capsys, str(dumped), "--json")
    assert json.loads(out)["ids"] == ["apps/test/0", "apps/test/1"]


def test_problems_on_toy(capsys):
    pytest.importorskip("mlx_selfdistill.toy.world", reason="toy world not written yet")
    code, out, _ = _run(capsys, "toy:heldout:4", "--json")
    info = json.loads(out)
    assert code == 0 and info["count"] == 4 and info["sources"] == {"toy": 4}
    assert info["test_types"]["call"] > 0


def test_bad_spec_exits_2_with_one_line(capsys):
    code, out, err = _run(capsys, "no-such-benchmark")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown problem source 'no-such-benchmark'")
    assert "Traceback" not in err


def test_malformed_file_exits_2_naming_line(capsys, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "tests": []}\n{"id": "b", "prompt": 3, "tests": []}\n')
    code, _, err = _run(capsys, str(path))
    assert code == 2 and err.strip() == f"error: {path}:2: prompt must be a string (field 'prompt')"
