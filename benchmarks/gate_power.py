"""How often would the validation gate keep an adapter as good as the MBPP study's?

The gate keeps an adapter only if a one-sided exact sign test on its validation flips is below
`gate.alpha / adapters compared` (mlx_selfdistill/gate.py). In the study it kept none of the
three 0.5B adapters on MBPP-validation's 90 problems, though two were better on MBPP-test. This
takes each method's flip rates measured on MBPP-test (500 problems; benchmarks/results/
mbpp_study.json) as the truth and simulates validation sets of N problems drawn from it: each
problem flips up, flips down or stays, with those rates. The share of simulated sets on which
the gate keeps the adapter is its power at N. A simulation from measured rates, seeded; it
runs in seconds.

    python benchmarks/gate_power.py    # -> benchmarks/results/gate_power.json
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from mlx_selfdistill.gate import threshold
from mlx_selfdistill.jsonl import write_json_atomic
from mlx_selfdistill.metrics import sign_test_p

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (90, 200, 374, 500, 1000)
COMPARED = (1, 3)  # one adapter (a preset's single recipe), or the study's 3 epochs
ALPHA = 0.1  # gate.alpha's default
TRIALS = 4000


def keep_rate(size: int, up: float, down: float, limit: float, rng: random.Random) -> float:
    kept = 0
    for _ in range(TRIALS):
        ups = downs = 0
        for _ in range(size):
            u = rng.random()
            ups += u < up
            downs += up <= u < up + down
        kept += ups > downs and sign_test_p(ups, downs) <= limit
    return kept / TRIALS


def main() -> int:
    study = json.loads((RESULTS / "mbpp_study.json").read_text())
    rng = random.Random(0)
    rows = []
    for m in study["methods"]:
        test = m["mbpp_test"]
        up, down = test["flips_up"] / test["total"], test["flips_down"] / test["total"]
        power = {str(c): {str(n): keep_rate(n, up, down, threshold(ALPHA, c), rng) for n in SIZES} for c in COMPARED}
        rows.append({"method": m["method"], "student": m["student"], "flip_rates": [round(up, 4), round(down, 4)],
                     "keep_rate_by_adapters_compared_and_validation_size": power})
        print(m["method"], json.dumps(power))
    write_json_atomic(RESULTS / "gate_power.json", {"alpha": ALPHA, "trials": TRIALS, "seed": 0,
                                                    "source": "mbpp_study.json flips on MBPP-test", "methods": rows})
    print(f"wrote {RESULTS / 'gate_power.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
