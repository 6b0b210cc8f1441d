"""Named prompt styles: EvalPlus's instruct prompt, its stop strings and extraction, on the tiny model."""

import dataclasses
import json

import pytest
from conftest import main_exit

from mlx_selfdistill.config import EvalSettings, resolve_config
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.evaluation import evaluate_model
from mlx_selfdistill.models import load_model, prompt_text, prompt_tokens
from mlx_selfdistill.problems import load_problems
from mlx_selfdistill.prompts import STYLES, get_style, styles
from mlx_selfdistill.prompts import evalplus
from mlx_selfdistill.records import Problem
from mlx_selfdistill.sampling import DrawSettings, SamplingParams, read_samples, sample_problems
from mlx_selfdistill.sanitize import keep_entry_point
from mlx_selfdistill.toy.world import toy_problems


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def humaneval(fixtures_dir):
    return load_problems(f"humaneval:{fixtures_dir / 'problems' / 'humaneval.jsonl'}")


@pytest.fixture(scope="module")
def fixtures_dir():
    from conftest import FIXTURES

    return FIXTURES


# -- the prompt ---------------------------------------------------------------------------------

def test_evalplus_prompt_shows_the_stub_alone_and_prefills_the_reply(tiny, humaneval):
    _, tok = tiny
    p = humaneval[0]
    text = prompt_text(tok, p, style="evalplus")
    user_part, _, reply_part = text.rpartition("<|im_start|>assistant\n")
    # The task: EvalPlus's instruction, then HumanEval's stub in a plain fence; not our own wording.
    assert f"{evalplus.INSTRUCTION_PREFIX}\n```\n{p.starter_code.strip()}\n```" in user_part
    assert p.prompt not in text and "Complete the Python function" not in text
    # The reply is pre-filled and left open inside a python fence: the model's first token is code.
    assert reply_part == f"{evalplus.RESPONSE_PREFIX}\n```python\n"
    assert "<|im_end|>" not in reply_part
    # The default style is unchanged: our instruction, an open assistant turn.
    chat = prompt_text(tok, p)
    assert "Complete the Python function" in chat and chat.endswith("<|im_start|>assistant\n")
    assert prompt_tokens(tok, p, style="evalplus") == tok.encode(text, add_special_tokens=False)


def test_evalplus_task_of_a_problem_without_a_stub_is_its_question(tiny):
    _, tok = tiny
    p = toy_problems("heldout", 1)[0]
    text = prompt_text(tok, p, style="evalplus")
    assert p.prompt.strip() in text and text.endswith(f"{evalplus.RESPONSE_PREFIX}\n```python\n")


def test_evalplus_needs_a_chat_template(humaneval):
    from mlx_lm.tokenizer_utils import TokenizerWrapper
    from transformers import AutoTokenizer

    from mlx_selfdistill.models import DEFAULT_MODEL

    hf = AutoTokenizer.from_pretrained(str(DEFAULT_MODEL))
    hf.chat_template = None  # a base model's tokenizer
    bare = TokenizerWrapper(hf)
    assert not bare.has_chat_template
    with pytest.raises(UserError, match="needs a model with a chat template") as err:
        prompt_text(bare, humaneval[0], style="evalplus")
    assert "\n" not in str(err.value)


def test_style_names_are_checked():
    assert get_style().name == "chat" and get_style(raw=True).name == "raw" and get_style("evalplus").stop
    with pytest.raises(UserError, match="unknown prompt style 'helm'.*chat, raw, evalplus"):
        get_style("helm")
    with pytest.raises(UserError, match="contradict"):
        get_style("evalplus", raw=True)


# -- extraction ---------------------------------------------------------------------------------

HE0 = Problem(id="x", prompt="", tests=[], entry_point="add")


@pytest.mark.parametrize("completion", [
    "def add(a, b):\n    return a + b",  # cut by the stop string "\n```\n"
    "def add(a, b):\n    return a + b\n```",  # closing fence, then EOS
    "def add(a, b):\n\treturn a + b\n",  # a tab (EvalPlus turns tabs into four spaces)
    "def add(a, b):\n    return a + b\n\n\nassert add(1, 2) == 4\n",  # a wrong demo assert is not graded
])
def test_evalplus_extraction_reopens_the_prefilled_fence(completion):
    got = STYLES["evalplus"].extract(completion, HE0)
    assert got.code == "def add(a, b):\n    return a + b\n" and got.fenced
    # The default extraction of the same text keeps a demo and would miss an unopened fence's code.
    assert STYLES["chat"].extract("def add(a, b):\n    return a + b\n```", HE0).code == ""


def test_keep_entry_point_keeps_imports_and_what_the_entry_point_reaches():
    code = '''import math
from typing import List

LIMIT = 10
UNUSED = 3

def helper(x):
    return math.sqrt(x) + LIMIT

@staticmethod_like
def decorated(xs: List[int]) -> int:
    return sum(helper(x) for x in xs)

def unrelated():
    return 0

class Box:
    pass

print(decorated([1, 2]))
if __name__ == "__main__":
    unrelated()
'''
    kept = keep_entry_point(code, "decorated")
    assert kept.startswith("import math\n\nfrom typing import List\n\nLIMIT = 10\n\ndef helper(x):")
    assert "@staticmethod_like\ndef decorated" in kept
    for gone in ("UNUSED", "unrelated", "class Box", "print(", "__main__"):
        assert gone not in kept
    # Unparsable code and a missing entry point are left for the sandbox to report.
    assert keep_entry_point("def decorated(:\n", "decorated") == "def decorated(:\n"
    assert keep_entry_point("x = 1\nprint(x)\n", "decorated") == "x = 1\nprint(x)\n"


# -- sampling and evaluation through a style ----------------------------------------------------

def test_samples_record_their_style_and_a_file_cannot_mix_styles(tiny, humaneval, tmp_path):
    model, tok = tiny
    out = tmp_path / "s.jsonl"
    greedy = DrawSettings(n=1, params=SamplingParams(temperature=0.0), max_tokens=24)
    (s,) = sample_problems(model, tok, humaneval[:1], dataclasses.replace(greedy, prompt_style="evalplus"),
                           out_path=out, group=None)
    assert s.prompt_style == "evalplus" and s.prompt_text.endswith("```python\n")
    assert read_samples(out)[0].prompt_style == "evalplus"
    with pytest.raises(UserError, match="prompt style 'evalplus'.*asks for 'chat'"):
        sample_problems(model, tok, humaneval[:2], greedy, out_path=out, group=None)
    # A file written before styles were recorded resumes under either style.
    old = json.loads(out.read_text())
    old.pop("prompt_style")
    out.write_text(json.dumps(old) + "\n")
    assert len(sample_problems(model, tok, humaneval[:2], greedy, out_path=out, group=None)) == 2


def test_a_styles_stop_strings_reach_the_engine(tiny, humaneval, monkeypatch):
    """The tiny model answers the pre-filled fence with another ```python line: a style whose
    stop string is that line ends the reply there, with the stop string cut off."""
    model, tok = tiny
    draw = DrawSettings(n=1, params=SamplingParams(temperature=0.0), max_tokens=40, prompt_style="evalplus")
    (free,) = sample_problems(model, tok, humaneval[:1], draw, group=None)
    assert free.completion.startswith("```python\n```python")
    stopping = dataclasses.replace(STYLES["evalplus"], stop=evalplus.STOP + ("\n```python",))
    monkeypatch.setitem(styles.STYLES, "evalplus", stopping)
    (cut,) = sample_problems(model, tok, humaneval[:1], draw, group=None)
    assert cut.completion == "```python" and cut.finish_reason == "stop" and cut.num_tokens < free.num_tokens


def test_evaluate_model_and_cli_take_a_prompt_style(tiny, humaneval, tmp_path, capsys):
    result = evaluate_model(tiny, humaneval, work_dir=tmp_path / "ev", temperature=0.0, max_tokens=24,
                            prompt_style="evalplus", workers=1)
    assert result["prompt_style"] == "evalplus" and result["num_problems"] == 3
    assert {s.prompt_style for s in read_samples(tmp_path / "ev" / "samples.jsonl")} == {"evalplus"}
    argv = ["eval", "--problems", "toy:heldout:2", "--max-tokens", "24", "--workers", "1", "--out",
            str(tmp_path / "cli"), "--json"]
    assert main_exit(argv + ["--prompt-style", "evalplus"]) == 0
    assert json.loads(capsys.readouterr().out)["base"]["prompt_style"] == "evalplus"
    assert main_exit(argv + ["--prompt-style", "helm"]) == 2
    assert "helm" in capsys.readouterr().err


def test_run_config_eval_prompt_style():
    cfg = resolve_config(overrides={"eval": {"prompt_style": "evalplus"}})
    assert cfg.eval.prompt_style == "evalplus" and cfg.to_dict()["eval"]["prompt_style"] == "evalplus"
    assert EvalSettings().prompt_style is None  # as the sample stage prompts
    with pytest.raises(UserError, match="unknown prompt style 'nope'"):
        resolve_config(overrides={"eval": {"prompt_style": "nope"}})


def test_a_run_started_before_eval_prompt_style_existed_resumes(tmp_path):
    from mlx_selfdistill.loop import Run

    cfg = resolve_config(preset_name="tiny-rft", overrides={"name": "old"})
    Run(cfg, tmp_path)
    stored = json.loads((tmp_path / "old" / "config.json").read_text())
    del stored["eval"]["prompt_style"]  # as written by the version before prompt styles
    (tmp_path / "old" / "config.json").write_text(json.dumps(stored))
    Run(cfg, tmp_path)  # same settings: resumes
    changed = resolve_config(preset_name="tiny-rft", overrides={"name": "old", "eval": {"prompt_style": "evalplus"}})
    with pytest.raises(UserError, match="different config .*eval"):
        Run(changed, tmp_path)
