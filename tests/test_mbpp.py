"""MBPP as shipped in ../shared/data/mbpp (and a small copy of its format): splits, records the
loader cannot use, functions named like builtins, and standard-library results graded as `==` would."""

import json
import warnings
from pathlib import Path

import pytest

from mlx_selfdistill.cli import main
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.execution import SandboxPool
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.problems.mbpp import SPLITS, load_mbpp
from mlx_selfdistill.problems.skipped import SkippedRecord, collect_skips

REAL_MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp" / "mbpp.jsonl"


def _row(task_id, code, asserts, **extra):
    return {"text": f"task {task_id}", "code": code, "task_id": task_id, "test_setup_code": "",
            "test_list": asserts, "challenge_test_list": [], **extra}


@pytest.fixture()
def mbpp_file(tmp_path):
    """One record per split, the builtin-named task 126, a Counter task like 902, and one bad record."""
    rows = [
        _row(3, "def three():\n    return 3", ["assert three() == 3"]),
        _row(11, "def inc(x):\n    return x + 1", ["assert inc(1) == 2", "assert inc(2) == 3"]),
        _row(126, "def sum(a, b):\n    return a + b", ["assert sum(10, 15) == 25"]),
        _row(520, "def dbl(x):\n    return 2 * x", ["assert dbl(2) == 4"]),
        _row(700, "from collections import Counter\ndef add_dict(a, b):\n    return Counter(a) + Counter(b)",
             ["assert add_dict({'a': 1}, {'a': 2, 'b': 1}) == ({'a': 3, 'b': 1})"]),
        _row(701, "", ["assert len([1]) == 1"]),  # no function to test: skipped, not fatal
        _row(702, "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
                  "def pt(a):\n    return P(a, a)", ["assert pt(1) == (1, 1)"]),
    ]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_splits_by_task_id(mbpp_file):
    with collect_skips():
        ids = {split: [p.id for p in load_problems(f"mbpp:{mbpp_file}:{split}")] for split in SPLITS}
        everything = [p.id for p in load_problems(f"mbpp:{mbpp_file}")]
    assert ids == {"prompt": ["Mbpp/3"], "test": ["Mbpp/11", "Mbpp/126"], "validation": ["Mbpp/520"],
                   "train": ["Mbpp/700", "Mbpp/702"]}
    assert len(everything) == 6
    with pytest.raises(UserError, match="unknown MBPP split 'tran'"):
        load_problems(f"mbpp:{mbpp_file}:tran")


def test_a_record_it_cannot_use_is_skipped_with_a_warning_naming_its_line(mbpp_file):
    with pytest.warns(SkippedRecord, match=r"mbpp.jsonl:6: skipped: cannot find the tested function"):
        problems = load_mbpp(mbpp_file)
    assert len(problems) == 6


def test_a_record_missing_a_field_is_skipped_naming_the_field(mbpp_file):
    rows = [json.loads(r) for r in mbpp_file.read_text().splitlines()]
    del rows[1]["test_list"]
    mbpp_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with collect_skips() as skipped:
        problems = load_mbpp(mbpp_file)
    assert "Mbpp/11" not in {p.id for p in problems} and len(problems) == 5
    assert any(m.startswith(f"{mbpp_file}:2: skipped: ") and "(field 'test_list')" in m for m in skipped)


def test_the_function_name_comes_from_the_reference_when_it_shadows_a_builtin(mbpp_file):
    with collect_skips():
        p = next(p for p in load_mbpp(mbpp_file) if p.id == "Mbpp/126")
    assert p.entry_point == "sum"
    assert p.tests == [{"type": "call", "input": [10, 15], "output": 25}]


def test_problems_command_counts_the_skipped(mbpp_file, capsys):
    main(["problems", f"mbpp:{mbpp_file}:train", "--json"])
    out = capsys.readouterr()
    info = json.loads(out.out)
    assert info["count"] == 2 and info["skipped"] == 1
    assert "mbpp.jsonl:6: skipped" in out.err


def test_standard_library_results_are_graded_as_python_compares_them(mbpp_file):
    with collect_skips():
        problems = {p.id: p for p in load_mbpp(mbpp_file)}
    with SandboxPool(workers=1, timeout_s=5.0, memory_mb=512) as pool:
        verdicts = pool.judge_many([(problems[i], problems[i].canonical_solution) for i in ("Mbpp/700", "Mbpp/702")])
        # An OrderedDict and a defaultdict equal to the expected dict pass too; a dict with other values does not.
        other = ("from collections import OrderedDict, defaultdict\n"
                 "def add_dict(a, b):\n    d = defaultdict(int, a)\n    for k, v in b.items():\n        d[k] += v\n"
                 "    return OrderedDict(sorted(d.items()))")
        wrong = "from collections import Counter\ndef add_dict(a, b):\n    return Counter(a)"
        more = pool.judge_many([(problems["Mbpp/700"], other), (problems["Mbpp/700"], wrong)])
    assert [v.status for v in verdicts] == ["pass", "pass"]
    assert [v.status for v in more] == ["pass", "fail"]


@pytest.mark.skipif(not REAL_MBPP.exists(), reason="the real MBPP is not beside this checkout (../shared/data/mbpp)")
def test_the_real_mbpp_loads_whole_with_the_papers_split_sizes():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedRecord)  # every one of the 974 records is usable
        sizes = {split: len(load_problems(f"mbpp:{REAL_MBPP}:{split}")) for split in SPLITS}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}


def test_a_solutions_invalid_escapes_raise_no_warnings_and_still_parse():
    """MBPP's references write regexes like '\\d' in plain strings: parsing them stays silent (the CI
    log was 72 warnings about dataset code) and still finds the function."""
    from mlx_selfdistill.problems.assert_parser import defined_functions
    from mlx_selfdistill.sanitize import keep_entry_point

    code = "import re\ndef digits(s):\n    return re.findall('\\d+', s)\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would turn into a SyntaxError inside ast.parse
        assert defined_functions(code) == ["digits"]
        assert "def digits" in keep_entry_point(code + "print(1)\n", "digits")
