"""Smaller things a new user met (issue 23, item 5): a misspelt format prefix, fuse's option
names, a pass@1 caption for an evaluation that never ran."""

import json
from pathlib import Path

import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.problems import load_problems

from conftest import main_exit, make_random_adapter

MBPP = Path(__file__).parent / "fixtures" / "problems" / "mbpp_full.jsonl"


def test_a_misspelt_format_prefix_is_named_not_a_missing_file():
    with pytest.raises(UserError, match=r"unknown format 'mbppp'.*did you mean mbpp:") as info:
        load_problems(f"mbppp:{MBPP}")
    assert "no such file" not in str(info.value)
    with pytest.raises(UserError, match="no such file"):
        load_problems(f"mbpp:{MBPP.parent / 'absent.jsonl'}")  # a known format: the path is what is wrong
    assert load_problems(f"mbpp:{MBPP}@2")  # and the right spelling loads


@pytest.mark.parametrize("names", [("--adapter", "--out"), ("--adapter-path", "--save-path")])
def test_fuse_takes_the_same_adapter_option_as_export_and_mlx_lms_names(tmp_path, capsys, names):
    adapter = make_random_adapter(tmp_path / "ad")
    code = main_exit(["fuse", names[0], str(adapter), names[1], str(tmp_path / "fused"), "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["fused_layers"] > 0
    assert (tmp_path / "fused" / "model.safetensors").exists()


def test_no_pass_at_1_caption_when_nothing_is_evaluated(tmp_path, capsys):
    code = main_exit(["run", "--preset", "tiny-ssd", "--name", "noeval", "--runs-dir", str(tmp_path / "runs"),
                      "--problems", "toy:train:3", "-n", "1", "--set", "sample.max_tokens=32",
                      "--set", "train.epochs=1", "--set", "eval.problems=none"])
    out = capsys.readouterr().out
    assert code == 0 and "training samples: T=1" in out
    assert "pass@1 sampling" not in out and "None" not in out


def test_an_mbpp_task_named_after_a_builtin_loads(tmp_path):
    """The real MBPP's task 126 defines `sum`: the whole file failed to load at its line."""
    row = {"text": "Write a python function to find the sum of common divisors of two given numbers.",
           "code": "def sum(a,b): \r\n    s = 0\r\n    for i in range (1,min(a,b)): \r\n        if (a % i == 0 and "
                   "b % i == 0): \r\n            s += i \r\n    return s", "task_id": 126, "test_setup_code": "",
           "test_list": ["assert sum(10,15) == 6", "assert sum(100,150) == 93", "assert sum(4,6) == 3"],
           "challenge_test_list": []}
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(row) + "\n")
    [problem] = load_problems(f"mbpp:{path}")
    assert problem.entry_point == "sum" and problem.tests[0] == {"type": "call", "input": [10, 15], "output": 6}
