"""The decode-rows probe: a measured pick, cached per machine, used by max_batch='auto'."""

import dataclasses
import json

import pytest

from mlx_selfdistill.models import load_model
from mlx_selfdistill.sampling import rows as rows_mod
from mlx_selfdistill.sampling import DrawSettings, SamplingParams, sample_problems
from mlx_selfdistill.toy.world import toy_problems


@pytest.fixture()
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_pick_is_the_fewest_rows_within_tolerance_of_the_best():
    assert rows_mod.pick_rows({8: 20.0, 16: 31.0, 32: 46.7, 64: 45.6}) == 32
    assert rows_mod.pick_rows({8: 20.0, 16: 45.0, 32: 46.7, 64: 47.0}) == 16  # 45 is within 5 % of 47
    assert rows_mod.pick_rows({"8": 1.0, "16": 3.0}) == 16  # keys read back from JSON are strings


def test_probe_is_measured_once_and_cached(cache_home):
    model, _ = load_model("tiny")
    first = rows_mod.rows_for(model, "tiny-test")
    assert first.rows in first.tok_s and all(v > 0 for v in first.tok_s.values())
    stored = json.loads(rows_mod.cache_path().read_text())
    assert stored[first.key]["rows"] == first.rows
    # A planted entry is what a second call returns: no new probe.
    stored[first.key]["rows"] = 7
    rows_mod.cache_path().write_text(json.dumps(stored))
    assert rows_mod.rows_for(model, "tiny-test").rows == 7


def test_max_batch_auto_uses_the_cached_pick(cache_home):
    model, tokenizer = load_model("tiny")
    probe = rows_mod.RowsProbe(model="tiny-auto", rows=3, tok_s={3: 1.0}, key=rows_mod._key("tiny-auto"))
    rows_mod.store(probe)
    problems = toy_problems("heldout", 4, seed=3)
    stats: dict = {}
    greedy = DrawSettings(n=2, params=SamplingParams(temperature=0), max_tokens=12)
    auto = sample_problems(model, tokenizer, problems, dataclasses.replace(greedy, max_batch="auto"),
                           model_name="tiny-auto", group=None, stats=stats)
    assert stats["max_batch"] == 3 and stats["tokens_per_sec"] > 0
    fixed = sample_problems(model, tokenizer, problems, greedy, group=None)
    assert [s.completion for s in auto] == [s.completion for s in fixed]
