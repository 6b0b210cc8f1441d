"""The distillation loop end to end on the tiny model, and kill-at-any-moment resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import pytest

from mlx_selfdistill.config import resolve_config
from mlx_selfdistill.loop import run

SMALL = {
    "problems": "toy:train:10",
    "sample": {"n": 2, "temperature": 1.0, "max_tokens": 64, "seed": 3},
    "train": {"iters": 6, "save_every": 2},
    "eval": {"problems": "toy:heldout:6", "n": 1, "max_tokens": 64},
}


def _config_file(tmp_path: Path, name: str, method: str) -> Path:
    import yaml

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "method": method, "model": "tiny", **SMALL}))
    return path


@pytest.mark.slow
def test_small_rft_run_end_to_end(tmp_path):
    config = resolve_config(config_file=str(_config_file(tmp_path, "e2e", "rft")))
    summary = run(config, tmp_path / "runs")
    rd = tmp_path / "runs" / "e2e" / "round_1"
    for name in ["samples.jsonl", "verdicts.jsonl", "train.jsonl", "eval.json"]:
        assert (rd / name).exists(), name
    assert (rd / "adapters" / "adapters.safetensors").exists()
    assert summary["rounds"][0]["samples"] == 18  # 10 problems, 1 held back for the validation gate, n=2
    assert (tmp_path / "runs" / "e2e" / "kept.json").exists()
    kept = summary["rounds"][0]["kept"]
    assert kept == sum(1 for _ in open(rd / "train.jsonl"))
    assert 0.0 <= summary["distilled_pass_at_1"] <= 1.0 and "base_pass_at_1" in summary
    # A rerun finds everything done and changes nothing.
    before = (rd / "samples.jsonl").read_bytes(), (rd / "verdicts.jsonl").read_bytes()
    again = run(config, tmp_path / "runs")
    assert before == ((rd / "samples.jsonl").read_bytes(), (rd / "verdicts.jsonl").read_bytes())
    # Stage times add up over invocations: the resumed run still reports what sampling cost.
    for stage in ("sample", "train"):
        assert again["rounds"][0]["seconds"][stage] >= summary["rounds"][0]["seconds"][stage] > 0


def _cli(config: Path, runs: Path):
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "mlx_selfdistill.cli", "run", "--config", str(config),
                             "--runs-dir", str(runs), "--json"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)


def _kill_when(proc, condition, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("condition never met")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _artefacts(run_dir: Path) -> dict:
    rd = run_dir / "round_1"
    samples = sorted((json.loads(l) for l in open(rd / "samples.jsonl")), key=lambda s: (s["problem_id"], s["sample_index"]))
    verdicts = sorted(((v["problem_id"], v["sample_index"], v["status"]) for v in map(json.loads, open(rd / "verdicts.jsonl"))))
    weights = mx.load(str(rd / "adapters" / "adapters.safetensors"))
    return {
        "samples": [(s["problem_id"], s["sample_index"], s["completion"]) for s in samples],
        "verdicts": verdicts,
        "train": (rd / "train.jsonl").read_text(),
        "weights": weights,
        "eval": json.loads((rd / "eval.json").read_text())["pass_at_1"],
    }


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_artefacts(tmp_path):
    config = _config_file(tmp_path, "kr", "rft")
    # Reference: one uninterrupted run.
    ref = _cli(config, tmp_path / "ref")
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()[-3000:]
    expected = _artefacts(tmp_path / "ref" / "kr")

    runs = tmp_path / "killed"
    rd = runs / "kr" / "round_1"
    kills = [
        lambda: _lines(rd / "samples.jsonl") >= 5,  # mid-sampling
        lambda: _lines(rd / "verdicts.jsonl") >= 3,  # mid-verification
        lambda: (rd / "adapters").exists() and any(p.name != "adapters.safetensors" for p in (rd / "adapters").iterdir()),
    ]
    killed = 0
    for condition in kills:
        proc = _cli(config, runs)
        killed += _kill_when(proc, condition)
    final = _cli(config, runs)
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()[-3000:]
    assert killed >= 2  # at least two of the three kills landed mid-stage
    got = _artefacts(runs / "kr")
    assert got["samples"] == expected["samples"]
    assert got["verdicts"] == expected["verdicts"]
    assert got["train"] == expected["train"]
    assert got["weights"].keys() == expected["weights"].keys()
    for k in got["weights"]:
        assert mx.allclose(got["weights"][k], expected["weights"][k], atol=1e-5).item(), k
    assert got["eval"] == expected["eval"]


@pytest.mark.slow
def test_teacher_to_student_with_another_tokenizer_over_two_rounds(tmp_path):
    """The teacher samples, the student (its own tokenizer) trains; round 2 continues from
    round 1's fused student, so both the adapter and the fuse path are exercised."""
    from mlx_selfdistill.fingerprint import model_identity
    from mlx_selfdistill.models import load_model, resolve_model
    from mlx_selfdistill.toy.build_model import build

    student = tmp_path / "student"
    build(student, seed=11, problems=40, steps=2, batch_size=4, evaluate=False, log_every=1)
    teacher_vocab = json.loads((Path(resolve_model("tiny")) / "tokenizer.json").read_text())["model"]["vocab"]
    student_vocab = json.loads((student / "tokenizer.json").read_text())["model"]["vocab"]
    assert teacher_vocab != student_vocab  # no shared tokenizer
    config = resolve_config(overrides={"name": "ts", "method": "rft", "model": str(student), "teacher": "tiny",
                                       "rounds": 2, "restart_from_base": False, **SMALL,
                                       "train": {"iters": 2}})
    summary = run(config, tmp_path / "runs")
    rd1, rd2 = (tmp_path / "runs" / "ts" / f"round_{r}" for r in (1, 2))
    for rd in (rd1, rd2):
        samples = [json.loads(line) for line in open(rd / "samples.jsonl")]
        assert samples and all(s["model"] == model_identity("tiny") for s in samples)  # the teacher sampled
        kept = [json.loads(line) for line in open(rd / "train.jsonl")]
        passing = {(v["problem_id"], v["sample_index"]) for v in map(json.loads, open(rd / "verdicts.jsonl"))
                   if v["status"] == "pass"}
        passing_text = {s["completion"] for s in samples if (s["problem_id"], s["sample_index"]) in passing}
        assert kept and all(ex["messages"][-1]["content"] in passing_text for ex in kept)  # teacher's raw text
    assert (rd1 / "model" / "model.safetensors").exists()  # round 1's student, fused
    assert summary["rounds"][1]["eval"]["model"] == str(rd2 / "model")
    _, tok = load_model(str(rd2 / "model"))
    assert tok.get_vocab() == load_model(str(student))[1].get_vocab()  # still the student's tokenizer


def test_missing_model_is_a_one_line_error(tmp_path, capsys):
    from mlx_selfdistill.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--preset", "tiny-rft", "--model", str(tmp_path / "no-such-model"),
              "--runs-dir", str(tmp_path / "runs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no-such-model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing to trip over once the typo is fixed
