"""One set of evaluation decoding defaults (decoding.EVAL) for eval, bench and a run's evaluation,
and the sampling caption every result table prints."""

import inspect

from click.testing import CliRunner

from mlx_selfdistill.bench import run_bench
from mlx_selfdistill.cli import cli
from mlx_selfdistill.commands.bench import bench
from mlx_selfdistill.commands.eval import eval_cmd
from mlx_selfdistill.config import EvalSettings
from mlx_selfdistill.decoding import EVAL, caption
from mlx_selfdistill.evaluation import evaluate_model

FIELDS = ("temperature", "top_k", "top_p", "min_p", "max_tokens", "seed")


def _cli_defaults(command) -> dict:
    return {p.name: p.default for p in command.params}


def test_eval_bench_and_run_share_one_default():
    want = EVAL.to_dict()
    for source in (_cli_defaults(eval_cmd), _cli_defaults(bench),
                   {k: v.default for k, v in inspect.signature(run_bench).parameters.items()},
                   {k: v.default for k, v in inspect.signature(evaluate_model).parameters.items()},
                   EvalSettings().__dict__):
        assert {k: source[k] for k in FIELDS} == {k: want[k] for k in FIELDS}, source
    assert _cli_defaults(bench)["n"] == EvalSettings().n == EVAL.n
    assert not isinstance(_cli_defaults(eval_cmd)["n"], int)  # unset: EVAL.n, or 1 when greedy


def test_caption_names_every_setting():
    text = caption({"temperature": 1.0, "top_k": 20, "top_p": 0.95, "min_p": 0.0, "n": 4, "max_tokens": 96,
                    "seed": 7}, "pass@1 sampling")
    assert text == "pass@1 sampling: T=1 top_k=20 top_p=0.95 min_p=0 n=4 max_tokens=96 seed=7"
    assert "top_k=?" in caption({"temperature": 0.5})


def test_eval_table_prints_the_sampling_settings(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--problems", "toy:heldout:2", "-n", "1", "--max-tokens", "16",
                                      "--top-k", "5", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert f"T=1 top_k=5 top_p=1 min_p=0 n=1 max_tokens=16 seed={EVAL.seed}" in " ".join(result.output.split())
