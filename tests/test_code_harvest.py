"""The `code:` problem source on a fixture package written for it (tests/fixtures/code_harvest/tidbits):
doctests, a unittest file, a pytest parametrize table, a wrong doctest, a helper-dependent
function, a generator, a sentinel default and a file that does not parse. Real sandbox runs."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.execution.verify import verify_samples
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.problems.code_harvest import harvest
from mlx_selfdistill.prompts import user_message
from mlx_selfdistill.records import Sample

TIDBITS = Path(__file__).resolve().parent / "fixtures" / "code_harvest" / "tidbits"


@pytest.fixture(scope="module")
def harvested(tmp_path_factory):
    return harvest(TIDBITS, cache_dir=tmp_path_factory.mktemp("cache"))


def by_name(h, name):
    found = [p for p in h.problems if p.entry_point == name]
    assert len(found) == 1, f"{name}: {[p.id for p in h.problems]}"
    return found[0]


def judge(problem, code):
    return verify_samples([problem], [Sample(problem.id, 0, code, code)], workers=1)[0]


def test_counts_found_kept_and_dropped_by_reason(harvested):
    r = harvested.report
    assert (r.functions, r.found, r.kept) == (18, 13, 10)
    assert r.dropped == {"no literal tests": 5, "body under 3 lines": 1, "no docstring": 1,
                         "reference fails its tests": 1}
    assert [p for p, _ in r.skipped_files] == ["tidbits/legacy.py"]  # does not parse: skipped, not fatal
    assert r.splits == {"train": 7, "validation": 1, "test": 2}
    assert sorted(p.entry_point for p in harvested.problems) == [
        "chunks", "clamp", "count_vowels", "countdown", "digit_count", "digit_sum", "first_word", "pairwise_sums", "plural",
        "rectangle_area"]


def test_prompt_is_signature_docstring_and_context_with_the_body_hidden(harvested):
    p = by_name(harvested, "count_vowels")
    assert p.starter_code.startswith('VOWELS = "aeiou"')
    assert "def _is_vowel(ch):" in p.starter_code  # the helper it calls, shown and shipped
    assert p.starter_code.rstrip().endswith('"""')  # stops after the docstring
    assert "n += 1" not in p.starter_code and "n += 1" in p.canonical_solution
    assert "def _is_vowel" in p.metadata["setup"] and "VOWELS" in p.metadata["setup"]
    assert p.metadata["file"] == "tidbits/text.py" and p.metadata["line"] == 11
    message = user_message(p)
    assert "count_vowels" in message and "already defined" in message


def test_helper_from_another_module_is_shipped(harvested):
    p = by_name(harvested, "digit_sum")
    assert "def digits(n):" in p.metadata["setup"] and "from ._util" not in p.metadata["setup"]
    assert judge(p, "def digit_sum(n):\n    return sum(digits(n))\n").status == "pass"


def test_import_time_calls_that_fill_a_shipped_table_ship_too(harvested):
    p = by_name(harvested, "plural")
    setup = p.metadata["setup"]
    assert "_IRREGULAR = {}" in setup and "def _register" in setup
    assert setup.index('_register("mouse", "mice")') > setup.index("def _register")
    candidate = "def plural(word):\n    return _IRREGULAR.get(word, word + 's')\n"
    assert judge(p, candidate).status == "pass"


def test_a_package_module_used_as_an_object_ships_what_it_reads(harvested):
    p = by_name(harvested, "digit_count")
    setup = p.metadata["setup"]
    assert "def digits(n):" in setup and "_util = types.SimpleNamespace(digits=digits)" in setup
    assert "from . import" not in setup
    assert judge(p, "def digit_count(n):\n    return len(_util.digits(n))\n").status == "pass"


def test_doctests_are_shown_and_unit_tests_are_graded_but_hidden(harvested):
    p = by_name(harvested, "clamp")
    visible = [t for t in p.tests if not t["hidden"]]
    hidden = [t for t in p.tests if t["hidden"]]
    assert [(t["input"], t["output"], t["origin"], t["where"]) for t in visible] == [
        ([7, 0, 10], 7, "doctest", "tidbits/arith.py:11")]
    assert [(t["input"], t["output"]) for t in hidden] == [([5, 0, 3], 3), ([-2, 0, 3], 0), ([2, 0, 3], 2)]
    assert all(t["origin"] == "unittest" and t["where"].startswith("tests/unittest_arith.py:") for t in hidden)
    message = user_message(p)
    assert "clamp(7, 0, 10)" in message and "clamp(5, 0, 3)" not in message and "-2" not in message
    # The test after a side-effect call (arith.clear_memo()) is skipped: clamp(11, 12, 13) is nowhere.
    assert [11, 12, 13] not in [t["input"] for t in p.tests]
    # A candidate that only fits the shown example fails on the hidden ones.
    copier = "def clamp(x, lo, hi):\n    return 7\n"
    v = judge(p, copier)
    assert v.status == "fail" and v.passed_tests == 1 and v.total_tests == 4


def test_a_candidates_future_import_still_runs_after_the_setup(harvested):
    p = by_name(harvested, "digit_sum")
    code = "from __future__ import annotations\n\ndef digit_sum(n: int) -> int:\n    return sum(digits(n))\n"
    assert judge(p, code).status == "pass"


def test_pytest_parametrize_rows_and_literal_loops_become_tests(harvested):
    pw = by_name(harvested, "pairwise_sums")
    assert [(t["input"], t["output"], t["origin"]) for t in pw.tests] == [
        ([[1, 2, 3]], [3, 5], "pytest"), ([[]], [], "pytest"), ([[5]], [], "pytest"), ([[1, -1, 4]], [0, 3], "pytest")]
    ch = by_name(harvested, "chunks")
    # The loop over CASES gives two tests; the test with a tmp_path fixture gives none.
    assert [(t["input"], t["output"]) for t in ch.tests] == [([[1, 2, 3, 4], 2], [[1, 2], [3, 4]]),
                                                            ([[1, 2, 3], 5], [[1, 2, 3]])]
    dsum = by_name(harvested, "digit_sum")
    assert [t["input"] for t in dsum.tests if t["hidden"]] == [[0], [123], [9999]]  # loop in a subTest


def test_generator_results_are_wrapped_and_next_calls_stay_one_session(harvested):
    p = by_name(harvested, "countdown")
    codes = [t["code"] for t in p.tests]
    assert codes == ["assert list(countdown(3)) == [3, 2, 1]\n",
                     "g = countdown(2)\nassert next(g) == 2\nassert next(g) == 1\n"]
    good = "def countdown(n):\n    for i in range(n, 0, -1):\n        yield i\n"
    assert judge(p, good).status == "pass"
    # A list-returning version passes list(...) but not next(): the session test is graded.
    as_list = "def countdown(n):\n    return list(range(n, 0, -1))\n"
    v = judge(p, as_list)
    assert v.status in ("fail", "error") and v.passed_tests == 1


def test_sentinel_default_is_shipped_with_the_function(harvested):
    p = by_name(harvested, "first_word")
    assert "_MISSING = object()" in p.starter_code and "_MISSING = object()" in p.metadata["setup"]
    assert "def first_word(text, default=_MISSING):" in p.starter_code
    candidate = ("def first_word(text, default=_MISSING):\n    parts = text.split()\n"
                 "    if parts:\n        return parts[0]\n    if default is _MISSING:\n"
                 "        raise ValueError(text)\n    return default\n")
    assert judge(p, candidate).status == "pass"


def test_wrong_doctest_drops_the_function_by_the_reference_check(harvested):
    assert "double_all" not in {p.entry_point for p in harvested.problems}
    [(pid, detail)] = harvested.report.reference_failures
    assert pid.endswith("text.py::double_all") and "expected [2, 4, 7], got [2, 4, 6]" in detail


def test_every_kept_reference_passes_in_the_sandbox_as_a_candidate(harvested):
    samples = [Sample(p.id, 0, p.canonical_solution, p.canonical_solution) for p in harvested.problems]
    verdicts = verify_samples(harvested.problems, samples, workers=2)
    assert [v.status for v in verdicts] == ["pass"] * len(harvested.problems)


def test_candidate_cannot_import_the_harvested_package(harvested):
    p = by_name(harvested, "clamp")
    cheat = "from tidbits.arith import clamp as original\n\ndef clamp(x, lo, hi):\n    return original(x, lo, hi)\n"
    v = judge(p, cheat)
    assert v.status == "error" and "No module named 'tidbits" in v.detail


def test_an_installed_package_is_hidden_from_the_candidate(tmp_path):
    """Harvest a tree named like an installed package (click): without the guard its original
    would be one import away; with it, the import fails. The sandbox reads site-packages only
    where the environment lives outside /tmp (it gets a private /tmp, and CI's venv is there),
    so "installed" is made certain here: the module is already imported, as an installed one
    would be, before the problem's setup runs."""
    pkg = tmp_path / "click"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('def shout(text):\n    """Upper case with a bang.\n\n    >>> shout("hi")\n'
                                     "    'HI!'\n    \"\"\"\n    loud = text.upper()\n    loud += '!'\n"
                                     "    return loud\n")
    h = harvest(pkg, cache_dir=tmp_path / "cache")
    [p] = h.problems
    assert p.metadata["hidden_modules"] == ["click"]
    installed = "import sys, types\nsys.modules['click'] = types.ModuleType('click')\n"
    future = "from __future__ import annotations\n"
    assert p.metadata["setup"].startswith(future)
    cheat = "import click\n\ndef shout(text):\n    return click.__name__ and text.upper() + '!'\n"
    unguarded = type(p)(**{**p.to_dict(), "metadata": {"setup": installed}})
    assert judge(unguarded, cheat).status == "pass"  # the original is one import away...
    guarded = type(p)(**{**p.to_dict(), "metadata": {
        **p.metadata, "setup": p.metadata["setup"].replace(future, future + installed, 1)}})
    v = judge(guarded, cheat)  # ...but not for a harvested problem's candidate
    assert v.status == "error" and "No module named 'click'" in v.detail


def _tar(path: Path, members: dict, top="tidbits-0.3") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_sdist_is_read_from_the_archive(tmp_path, harvested):
    files = {str(f.relative_to(TIDBITS)): f.read_bytes() for f in TIDBITS.rglob("*.py")}
    sdist = _tar(tmp_path / "tidbits-0.3.tar.gz", files)
    h = harvest(sdist, cache_dir=tmp_path / "cache")
    assert [p.id for p in h.problems] == [p.id for p in harvested.problems]
    assert {p.metadata["version"] for p in h.problems} == {"0.3"}
    assert not (tmp_path / "tidbits-0.3").exists()  # nothing extracted


def test_sdist_member_that_escapes_is_refused(tmp_path):
    evil = _tar(tmp_path / "evil-1.0.tar.gz", {"../outside.py": b"x = 1\n"}, top="")
    with pytest.raises(UserError, match="leaves the archive"):
        harvest(evil, cache_dir=tmp_path / "cache")
    link = tmp_path / "link-1.0.tar.gz"
    with tarfile.open(link, "w:gz") as tf:
        info = tarfile.TarInfo("link-1.0/pkg/mod.py")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UserError, match="not a regular file"):
        harvest(link, cache_dir=tmp_path / "cache")


def test_spec_selects_a_split_by_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train = load_problems(f"code:{TIDBITS}:train")
    test = load_problems(f"code:{TIDBITS}:test")
    assert {p.metadata["split"] for p in train} == {"train"} and len(train) == 7
    assert {p.metadata["file"] for p in test} == {"tidbits/arith.py"} and len(test) == 2
    assert not {p.metadata["file"] for p in train} & {p.metadata["file"] for p in test}
    assert len(load_problems(f"code:{TIDBITS}")) == 10
    assert (tmp_path / "mlx-selfdistill" / "harvest").is_dir()  # harvested once, cached by content


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        load_problems(f"code:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no Python files"):
        load_problems(f"code:{tmp_path / 'empty'}")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "m.py").write_text("def f(x):\n    return x\n\ndef g(y):\n    '''Doc, no examples.'''\n    return y\n")
    with pytest.raises(UserError, match=r"no problems harvested from 2 functions .*no literal tests: 2"):
        load_problems(f"code:{plain}", cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="the validation split is empty"):
        shutil.copytree(TIDBITS / "tidbits", tmp_path / "only_arith" / "tidbits",
                        ignore=lambda d, names: [n for n in names if n not in ("arith.py", "_util.py")])
        load_problems(f"code:{tmp_path / 'only_arith'}:validation", cache_dir=tmp_path / "cache")


def test_problems_command_reports_the_harvest(tmp_path, capsys, monkeypatch):
    from conftest import main_exit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main_exit(["problems", f"code:{TIDBITS}:train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 7
    assert out["harvest"]["found"] == 13 and out["harvest"]["kept"] == 10
    assert out["harvest"]["dropped"]["reference fails its tests"] == 1
    assert main_exit(["problems", f"code:{TIDBITS}"]) == 0
    text = capsys.readouterr().out
    assert "dropped: no docstring" in text and "kept" in text
    # "@N" takes the first N, as for every other source (not "no such file ...train@3")
    assert main_exit(["problems", f"code:{TIDBITS}:train@3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 3


@pytest.mark.slow
def test_rft_run_on_harvested_problems_with_the_tiny_model(tmp_path, monkeypatch, capsys):
    """`run --method rft --model tiny --problems code:X:train --eval-problems code:X:test`: the
    base is evaluated on the held-out file's problems, every training problem is sampled and
    graded with its setup. The tiny model (trained on toy prompts without a starter block)
    writes an empty fence for these prompts, so rft has nothing to keep and says so in one
    line, as for any source where the model solves nothing."""
    from conftest import main_exit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main_exit(["run", "--method", "rft", "--model", "tiny", "--problems", f"code:{TIDBITS}:train",
                      "--eval-problems", f"code:{TIDBITS}:test", "--runs-dir", str(tmp_path / "runs"),
                      "--name", "harvested", "-n", "2", "--iters", "2",
                      "--set", "sample.max_tokens=32", "--set", "eval.max_tokens=32", "--set", "eval.n=1",
                      "--set", "gate.holdout=0"])  # every training problem sampled (no validation slice)
    err = capsys.readouterr().err
    run_dir = tmp_path / "runs" / "harvested"
    base = json.loads((run_dir / "base" / "eval.json").read_text())
    assert base["num_problems"] == 2 and base["model"] == "tiny"
    base_ids = {json.loads(l)["problem_id"] for l in open(run_dir / "base" / "eval" / "verdicts.jsonl")}
    assert base_ids == {"tidbits/tidbits/arith.py::clamp", "tidbits/tidbits/arith.py::digit_sum"}
    verdicts = [json.loads(l) for l in open(run_dir / "round_1" / "verdicts.jsonl")]
    assert len(verdicts) == 7 * 2 and {v["problem_id"].split("::")[0] for v in verdicts} == {
        "tidbits/tidbits/seq.py", "tidbits/tidbits/text.py", "tidbits/tidbits/words.py"}
    if code != 0:  # the expected outcome with this model: the one-line filter error, no traceback
        assert code == 2 and "the filter kept no samples" in err and "Traceback" not in err
    else:
        assert (run_dir / "round_1" / "adapters" / "adapters.safetensors").exists()
