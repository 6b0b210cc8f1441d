"""The validation gate in a run, on the tiny model: a worse round is not handed back, --select
keeps the best setting on validation, the held-back slice is never trained on, and it resumes."""

import json

import pytest

from mlx_selfdistill.cli import main
from mlx_selfdistill.config import resolve_config
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.gate import NO_GAIN, too_few_warning
from mlx_selfdistill.loop import run
from mlx_selfdistill.metrics import sign_test_p
from mlx_selfdistill.records import Sample, read_records

SMALL = {"model": "tiny", "method": "rft", "problems": "toy:train:40", "rounds": 1,
         "sample": {"n": 2, "max_tokens": 48}, "train": {"epochs": 1},
         "eval": {"problems": "toy:heldout:8", "n": 1, "max_tokens": 48}}


def _pass_rates(verdicts_path):
    rates: dict[str, list[bool]] = {}
    for line in verdicts_path.read_text().splitlines():
        v = json.loads(line)
        rates.setdefault(v["problem_id"], []).append(v["status"] == "pass")
    return {pid: sum(x) / len(x) for pid, x in rates.items()}


def _config(name, **gate):
    return resolve_config(overrides={**SMALL, "name": name, "gate": gate})


def test_a_round_that_gets_worse_is_not_handed_back(tmp_path, capsys):
    # A rate this high wrecks the tiny model in its first steps.
    config = resolve_config(overrides={**SMALL, "name": "worse", "train": {"epochs": 2, "lr": 0.05},
                                       "gate": {"problems": "toy:heldout:12"}})
    summary = run(config, tmp_path)
    kept = json.loads((tmp_path / "worse" / "kept.json").read_text())
    assert summary["rounds"][0]["validation"]["pass_at_1"] < summary["base_validation"]["pass_at_1"]
    assert kept["round"] == 0 and kept["adapter"] is None and kept["message"] == NO_GAIN
    assert summary["distilled_pass_at_1"] == summary["base_pass_at_1"]  # what is handed back: the base
    assert NO_GAIN in capsys.readouterr().err
    # The decision's flips, counted again from the two validation verdict files.
    base = _pass_rates(tmp_path / "worse" / "base" / "validation" / "eval" / "verdicts.jsonl")
    after = _pass_rates(tmp_path / "worse" / "round_1" / "validation" / "eval" / "verdicts.jsonl")
    assert len(base) == len(after) == 12
    ev = kept["evidence"]
    assert ev["flips_down"] == sum(after[p] < base[p] for p in base) > 0
    assert ev["flips_up"] == sum(after[p] > base[p] for p in base)
    assert ev["sign_test_p"] == sign_test_p(ev["flips_up"], ev["flips_down"])


def test_select_trains_one_adapter_per_value_and_installs_the_best(tmp_path):
    config = resolve_config(overrides={**SMALL, "name": "sel", "gate": {"problems": "toy:heldout:12"}},
                            assignments=["gate.select={lr: [1e-4, 3e-3]}"])
    assert config.gate.select == {"lr": [1e-4, 3e-3]}
    summary = run(config, tmp_path)
    rd = tmp_path / "sel" / "round_1"
    chosen = summary["rounds"][0]["train"]["selected"]
    scores = {c["value"]: c["validation_pass_at_1"] for c in chosen["candidates"]}
    assert set(scores) == {1e-4, 3e-3} and scores[chosen["value"]] == max(scores.values())
    installed = (rd / "adapters" / "adapters.safetensors").read_bytes()
    assert installed == (rd / "select" / f"lr={chosen['value']}" / "adapters" / "adapters.safetensors").read_bytes()
    other = next(v for v in scores if v != chosen["value"])
    assert installed != (rd / "select" / f"lr={other}" / "adapters" / "adapters.safetensors").read_bytes()
    assert summary["rounds"][0]["validation"]["pass_at_1"] == scores[chosen["value"]]
    # Run again: nothing is redone, the same model is kept.
    again = run(config, tmp_path)
    assert again["kept"] == summary["kept"]


def test_the_held_back_slice_is_validated_on_and_never_trained_on(tmp_path):
    summary = run(_config("slice"), tmp_path)
    samples = read_records(tmp_path / "slice" / "round_1" / "samples.jsonl", Sample)
    sampled = {s.problem_id for s in samples}
    assert len(sampled) == 36  # 40 training problems, 10 % held back
    validated = {json.loads(line)["problem_id"] for line in
                 (tmp_path / "slice" / "base" / "validation" / "eval" / "verdicts.jsonl").read_text().splitlines()}
    assert len(validated) == 4 and not validated & sampled
    assert summary["kept"]["validation_problems"] == 4


def test_select_values_are_typed_and_checked_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--model", "tiny", "--name", "bad", "--runs-dir", str(tmp_path), "--select", "lr=1e-5,abc"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "gate.select.lr" in err and "number" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    with pytest.raises(UserError, match="at least two values"):
        resolve_config(overrides={"gate": {"select": {"lr": ["1e-5"]}}})
    assert resolve_config(overrides={"gate": {"select": {"lr": ["1e-5", "2e-4"]}}}).gate.select == {"lr": [1e-5, 2e-4]}


def test_too_few_problems_for_the_slice_is_refused_before_any_work(tmp_path):
    config = resolve_config(overrides={**SMALL, "name": "one", "problems": "toy:train:1"})
    with pytest.raises(UserError, match="too few to hold any back"):
        run(config, tmp_path)
    assert not (tmp_path / "one").exists()


def test_too_few_validation_problems_are_flagged():
    config = resolve_config(overrides={**SMALL, "name": "few", "gate": {"problems": "toy:heldout:3"}},
                            assignments=["gate.select={lr: [1e-4, 3e-3]}"])
    warning = too_few_warning(config, 3)
    assert "3 validation problem(s) cannot show a gain at gate.alpha=0.1 over 2 adapter(s)" in warning
    assert too_few_warning(config, 5) is None  # 1/32 <= 0.1 / 2
    config.gate.alpha = 1.0
    assert too_few_warning(config, 3) is None  # alpha 1: no test
