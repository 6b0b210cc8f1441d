"""The validation gate's decisions (gate.py); the loop's use of it is in test_loop_gate.py."""

import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.gate import (NO_GAIN, NOT_SHOWN, Candidate, GateSettings, can_show_gain, held_back, keep,
                                  parse_select)
from mlx_selfdistill.metrics import mcnemar_exact_p, sign_test_p


def test_held_back_slice_is_fixed_by_id_not_order():
    ids = [f"toy/{i}" for i in range(200)]
    a = held_back(ids, 0.1)
    assert len(a) == 20 and a <= set(ids)
    assert held_back(list(reversed(ids)), 0.1) == a
    assert held_back(ids, 0) == set()
    with pytest.raises(UserError, match="too few"):
        held_back(["only"], 0.5)


def _model(label, outcomes, r=0):
    """A candidate from per-problem outcomes (1 pass, 0 fail) on problems p0, p1, ..."""
    per = {f"p{i}": float(x) for i, x in enumerate(outcomes)}
    return Candidate(label, sum(per.values()) / len(per), r, label, per)


def test_keeps_the_best_only_when_it_beats_the_base():
    base = _model("base", [1] * 8 + [0] * 12)
    worse = [_model("round 1", [1] * 6 + [0] * 14, 1), _model("round 2", [1] * 7 + [0] * 13, 2)]
    decision = keep(base, worse, alpha=1.0)
    assert decision.kept is None and decision.message == NO_GAIN
    tie = _model("round 3", [0] + [1] * 8 + [0] * 11, 3)  # the same score, other problems: not a gain
    assert keep(base, worse + [tie], alpha=1.0).kept is None
    better = worse + [_model("round 3", [1] * 9 + [0] * 11, 3), _model("round 4", [1] * 9 + [0] * 11, 4)]
    decision = keep(base, better, alpha=1.0)
    assert decision.kept.round == 3 and "round 3" in decision.message  # ties: the earlier round


def test_a_gain_within_chance_keeps_the_base():
    # code_run.json's case: 12/41 against 11/41 on validation, then worse on the test files.
    base = _model("base", [1] * 11 + [0] * 30)
    edge = _model("round 1", [0, 0, 0] + [1] * 8 + [1, 1, 1, 1] + [0] * 26, 1)  # +4 / -3
    assert edge.passed > base.passed
    decision = keep(base, [edge], alpha=0.1)
    assert decision.kept is None and decision.message.startswith(NOT_SHOWN)
    assert decision.evidence["flips_up"] == 4 and decision.evidence["flips_down"] == 3
    assert decision.evidence["sign_test_p"] == sign_test_p(4, 3) == 0.5
    assert keep(base, [edge], alpha=1.0).kept == edge  # alpha 1: any higher score is kept
    clear = _model("round 1", [1] * 11 + [1] * 8 + [0] * 22, 1)  # +8 / -0: p = 1/256
    decision = keep(base, [clear], alpha=0.1)
    assert decision.kept == clear and "p=0.0039" in decision.message


def test_the_threshold_is_divided_among_the_adapters_compared():
    base = _model("base", [0] * 20)
    five_up = _model("round 1", [1] * 5 + [0] * 15, 1)  # p = 1/32 = 0.031
    assert keep(base, [five_up], alpha=0.1).kept == five_up
    decision = keep(base, [five_up], alpha=0.1, compared=6)  # 0.1 / 6 = 0.017
    assert decision.kept is None and decision.evidence["threshold"] == pytest.approx(0.1 / 6)
    assert can_show_gain(4, 0.1, 1) and not can_show_gain(3, 0.1, 1) and not can_show_gain(4, 0.1, 2)


def test_sign_test_is_half_of_mcnemar_and_checked():
    for ups, downs in [(0, 0), (3, 2), (8, 0), (1, 9), (12, 5)]:
        if ups > downs:
            assert sign_test_p(ups, downs) == pytest.approx(min(1.0, mcnemar_exact_p(ups, downs) / 2))
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(1, 9) > 0.99
    with pytest.raises(ValueError):
        sign_test_p(-1, 2)


def test_select_values_and_settings_are_checked():
    assert parse_select("lr=1e-5, 3e-5,1e-4") == {"lr": ["1e-5", "3e-5", "1e-4"]}
    for bad in ("lr", "lr=", "=1,2", "lr=1e-5,,1e-4"):
        with pytest.raises(UserError, match="--select"):
            parse_select(bad)
    with pytest.raises(UserError, match="holdout"):
        GateSettings(holdout=1.5)
    with pytest.raises(UserError, match="at least two values"):
        GateSettings(select={"lr": [1e-5]})
    for bad in (0, 1.5, "0.1", True):
        with pytest.raises(UserError, match="gate.alpha"):
            GateSettings(alpha=bad)
    assert not GateSettings(holdout=0).enabled and GateSettings(problems="toy:heldout:5", holdout=0).enabled
