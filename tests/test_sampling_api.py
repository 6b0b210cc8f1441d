"""sample_problems / the `sample` command: records, resume, kill-and-resume, mlx.launch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import main_exit

from mlx_selfdistill.config import resolve_config
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.jsonl import read_jsonl
from mlx_selfdistill.models import load_model
from mlx_selfdistill.sampling import DrawSettings, SamplingParams, read_samples, sample_problems
from mlx_selfdistill.toy.world import toy_problems

ROOT = Path(__file__).resolve().parent.parent
PARAMS = SamplingParams(temperature=1.0, top_k=20, top_p=0.95, seed=11)


def drawn(n: int, max_tokens: int = 64, **kw) -> DrawSettings:
    return DrawSettings(n=n, params=kw.pop("params", PARAMS), max_tokens=max_tokens, **kw)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def keys(path):
    return [(r["problem_id"], r["sample_index"]) for r in read_jsonl(path, allow_partial_tail=True)]


def comparable(samples):
    """What must be identical across runs; log-probs may differ in the 7th digit
    (batch shape changes float summation order), so they are compared loosely."""
    return {s.key: (s.completion, s.code, s.finish_reason, s.num_tokens, round(s.mean_logprob, 3))
            for s in samples}


def test_samples_have_every_field_and_are_appended(tiny, tmp_path):
    model, tokenizer = tiny
    problems = toy_problems("heldout", 3, seed=1)
    out = tmp_path / "samples.jsonl"
    seen = []
    samples = sample_problems(model, tokenizer, problems, drawn(2), round=3, model_name="tiny-coder", out_path=out,
                              on_sample=seen.append)
    assert [s.key for s in samples] == [(p.id, i) for p in problems for i in range(2)]
    assert len(seen) == 6 and sorted(keys(out)) == sorted(s.key for s in samples)
    for s in read_samples(out):
        assert s.round == 3 and s.model == "tiny-coder"
        assert s.prompt_text.startswith("<|im_start|>user") and s.prompt_text.endswith("assistant\n")
        assert s.finish_reason in ("stop", "length", "runaway")
        assert s.num_tokens >= 1 and s.mean_logprob < 0 and s.mean_sampling_logprob <= 0
        assert s.sampling == {"temperature": 1.0, "top_k": 20, "top_p": 0.95, "min_p": 0.0, "seed": 11,
                              "max_tokens": 64}
        if "```" in s.completion:
            assert s.code and "```" not in s.code


def test_rerun_skips_what_is_there_and_adds_the_rest(tiny, tmp_path):
    model, tokenizer = tiny
    problems = toy_problems("heldout", 4, seed=2)
    out = tmp_path / "s.jsonl"
    full = sample_problems(model, tokenizer, problems, drawn(3))  # reference, no file
    sample_problems(model, tokenizer, problems[:2], drawn(2), out_path=out)
    new = []
    stats = {}
    again = sample_problems(model, tokenizer, problems, drawn(3), out_path=out, on_sample=new.append, stats=stats)
    assert len(new) == 12 - 4 and stats["skipped"] == 4
    assert sorted(keys(out)) == sorted((p.id, i) for p in problems for i in range(3))
    assert comparable(again) == comparable(full)
    # Nothing left to do: no new samples, file unchanged.
    before = out.read_bytes()
    assert sample_problems(model, tokenizer, problems, drawn(3), out_path=out, on_sample=new.append)
    assert out.read_bytes() == before and len(new) == 8


def test_rerun_with_other_settings_is_refused(tiny, tmp_path):
    model, tokenizer = tiny
    problems = toy_problems("heldout", 1)
    out = tmp_path / "s.jsonl"
    sample_problems(model, tokenizer, problems, drawn(1), out_path=out)
    with pytest.raises(UserError, match="another output file"):
        sample_problems(model, tokenizer, problems, drawn(1, params=SamplingParams(temperature=0.5, top_k=20, top_p=0.95,
                                                                                    seed=11)), out_path=out)


def test_draw_settings_record_what_makes_a_sample_and_the_run_config_builds_them():
    assert drawn(2).identity() == {**PARAMS.to_dict(), "max_tokens": 64}
    assert drawn(2, exact=True).identity()["exact"] is True
    assert drawn(1, max_batch=4).identity() == drawn(1, max_batch=16).identity()  # engine limits: not identity
    with pytest.raises(UserError, match="n 0: must be >= 1"):
        DrawSettings(n=0)
    cfg = resolve_config(overrides={"sample": {"n": 3, "temperature": 0.6, "top_k": 5, "seed": 7, "max_tokens": 40,
                                               "prompt_style": "evalplus", "max_batch": 8, "exact": True}}).sample
    draw = cfg.draw(seed_offset=1000)
    assert (draw.n, draw.max_tokens, draw.prompt_style, draw.max_batch, draw.exact) == (3, 40, "evalplus", 8, True)
    assert draw.params == SamplingParams(temperature=0.6, top_k=5, seed=1007)


def test_raw_prompt_has_no_chat_template(tiny):
    model, tokenizer = tiny
    p = toy_problems("heldout", 1)[0]
    (s,) = sample_problems(model, tokenizer, [p], drawn(1, raw_prompt=True))
    assert "<|im_start|>" not in s.prompt_text and p.prompt.strip() in s.prompt_text


def test_cli_json_summary_and_errors(tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    assert main_exit(["sample", "--problems", "toy", "--limit", "2", "-n", "2", "--max-tokens", "32", "-o",
                      str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 4 and info["new_samples"] == 4 and info["generated_tokens"] > 0
    assert len(read_jsonl(out)) == 4
    assert main_exit(["sample", "--problems", "toy", "--limit", "1", "--top-p", "0", "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: top_p")


def _env():
    return dict(os.environ)  # the CLI binds MLX to the pip-installed OpenBLAS itself (blas.py)


CLI_ARGS = ["sample", "--problems", "toy", "--limit", "10", "--num-samples", "6", "--temperature", "1.0",
            "--top-k", "20", "--top-p", "0.95", "--seed", "11", "--max-tokens", "96", "--max-batch", "8"]


@pytest.mark.slow
def test_resume_after_sigkill_loses_and_duplicates_nothing(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "mlx_selfdistill.cli", *CLI_ARGS, "-o", str(out)],
                            env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 12):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_bytes().count(b"\n")
    assert 12 <= written < 60, "the kill must land mid-file"
    with open(out, "ab") as fh:  # what a kill during a write leaves behind
        fh.write(b'{"problem_id": "toy/heldout/torn", "sample_in')

    assert main_exit(CLI_ARGS + ["-o", str(out)]) == 0
    got = read_samples(out)
    assert len(got) == 60 and len({s.key for s in got}) == 60
    reference = sample_problems(model, tokenizer, toy_problems("heldout", 10), drawn(6, max_tokens=96, max_batch=8))
    assert comparable(got) == comparable(reference)


@pytest.mark.slow
def test_two_ranks_under_mlx_launch_merge_into_one_file(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "dist.jsonl"
    launcher = Path(sys.executable).with_name("mlx.launch")
    args = ["sample", "--problems", "toy", "--limit", "5", "--num-samples", "3", "--max-tokens", "48",
            "--seed", "5", "-o", str(out), "--json"]
    script = Path(sys.executable).with_name("mlx-selfdistill")
    port = 32000 + os.getpid() % 2000
    proc = subprocess.run([str(launcher), "-n", "2", "--backend", "ring", "-p", str(port), "--python", sys.executable,
                           str(script), *args], env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["world_size"] == 2 and info["samples"] == 15
    got = read_samples(out)
    assert len({s.key for s in got}) == len(got) == 15
    assert not list(tmp_path.glob("dist.jsonl.rank*")), "shards are removed after the merge"
    reference = sample_problems(model, tokenizer, toy_problems("heldout", 5),
                                DrawSettings(n=3, params=SamplingParams(seed=5), max_tokens=48), group=None)
    assert comparable(got) == comparable(reference)
