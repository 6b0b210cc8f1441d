"""The validation gate's decisions (gate.py); the loop's use of it is in test_loop_gate.py."""

import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.gate import NO_GAIN, Candidate, GateSettings, held_back, keep, parse_select


def test_held_back_slice_is_fixed_by_id_not_order():
    ids = [f"toy/{i}" for i in range(200)]
    a = held_back(ids, 0.1)
    assert len(a) == 20 and a <= set(ids)
    assert held_back(list(reversed(ids)), 0.1) == a
    assert held_back(ids, 0) == set()
    with pytest.raises(UserError, match="too few"):
        held_back(["only"], 0.5)


def test_keeps_the_best_only_when_it_beats_the_base():
    worse = [Candidate("round 1", 0.30, 1, "r1"), Candidate("round 2", 0.35, 2, "r2")]
    kept, why = keep(0.40, worse)
    assert kept is None and why == NO_GAIN
    kept, why = keep(0.35, worse)  # a tie with the base is not a gain
    assert kept is None
    better = worse + [Candidate("round 3", 0.45, 3, "r3"), Candidate("round 4", 0.45, 4, "r4")]
    kept, why = keep(0.40, better)
    assert kept.round == 3 and "round 3" in why  # ties: the earlier round


def test_select_values_and_settings_are_checked():
    assert parse_select("lr=1e-5, 3e-5,1e-4") == {"lr": ["1e-5", "3e-5", "1e-4"]}
    for bad in ("lr", "lr=", "=1,2", "lr=1e-5,,1e-4"):
        with pytest.raises(UserError, match="--select"):
            parse_select(bad)
    with pytest.raises(UserError, match="holdout"):
        GateSettings(holdout=1.5)
    with pytest.raises(UserError, match="at least two values"):
        GateSettings(select={"lr": [1e-5]})
    assert not GateSettings(holdout=0).enabled and GateSettings(problems="toy:heldout:5", holdout=0).enabled
