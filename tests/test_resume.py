"""Exact resume end to end: a run SIGKILLed in any stage and started again ends with the same
adapter bytes and the same evaluation as a run never interrupted.

The kills land at exact units of work through the test-only hook in killpoints.py (the process
kills itself after the Nth record or training step), so the test does not depend on timing.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

CONFIG = {
    "name": "exact", "method": "rft", "model": "tiny", "problems": "toy:train:12", "evaluate_base": False,
    # Few rows at once: continuous batching then orders a resumed run's samples differently.
    "sample": {"n": 3, "temperature": 1.0, "max_tokens": 48, "seed": 5, "max_batch": 4},
    "filter": {"dedup": False},  # as the demo: every passing sample is trained on
    "train": {"iters": 4, "save_every": 2, "batch_tokens": 512},
    "eval": {"problems": "toy:heldout:4", "n": 2, "max_tokens": 48},
}
# One kill per stage, each in the run that resumes the previous one.
KILLS = [
    "round_1/samples.jsonl:8",  # sampling: 8 of 36 samples written
    "round_1/verdicts.jsonl:3",  # verification: 3 verdicts written
    "train-step:3",  # training: after step 3, between the checkpoints of steps 2 and 4
    "round_1/eval/samples.jsonl:3",  # evaluation: 3 of 8 evaluation samples written
]


def _run(config: Path, runs: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLX_SELFDISTILL_TEST_KILL", None)
    if kill:
        env["MLX_SELFDISTILL_TEST_KILL"] = kill
    return subprocess.run([sys.executable, "-m", "mlx_selfdistill.cli", "run", "--config", str(config),
                           "--runs-dir", str(runs), "--json"], capture_output=True, text=True, env=env, timeout=600)


def _outcome(run_dir: Path) -> dict:
    rd = run_dir / "round_1"
    evaluation = json.loads((rd / "eval.json").read_text())
    evaluation.pop("adapter")  # a path inside this run directory
    evaluation.pop("work_dir")  # the same
    return {"adapter": (rd / "adapters" / "adapters.safetensors").read_bytes(),
            "train": (rd / "train.jsonl").read_text(), "eval": evaluation}


@pytest.mark.slow
def test_run_killed_in_every_stage_resumes_to_the_same_adapter_and_eval(tmp_path):
    import yaml

    config = tmp_path / "exact.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    ref = _run(config, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = _outcome(tmp_path / "ref" / "exact")

    runs = tmp_path / "killed"
    for kill in KILLS:
        proc = _run(config, runs, kill)
        assert proc.returncode == -signal.SIGKILL, f"{kill}: the run was not killed there\n{proc.stderr[-2000:]}"
    final = _run(config, runs)
    assert final.returncode == 0, final.stderr[-3000:]
    got = _outcome(runs / "exact")
    rd = runs / "exact" / "round_1"
    assert json.loads((rd / "train_done.json").read_text())["start_step"] == 2  # resumed from a checkpoint
    assert got["adapter"] == expected["adapter"], "the adapter differs"  # bit for bit
    assert got["train"] == expected["train"]
    assert got["eval"] == expected["eval"]
