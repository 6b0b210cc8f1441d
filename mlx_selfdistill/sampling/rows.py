"""How many rows the decode batch should have on this machine: measured, not fixed.

A decode step reads every weight once whatever the rows, so tokens/s grows with rows until
the matmuls stop being bound by that read; past the knee more rows add memory and latency
but no tokens/s (Qwen2.5-Coder-0.5B on 2 x86 cores: 46.7 tokens/s at 32 rows, 45.6 at 64).
Where the knee lies depends on the model, the chip and the BLAS, so `probe_rows` times the
model's bare decode step (through the engine's own SlotBatch, on a 128-token context) at a
few row counts and `pick_rows` takes the fewest rows within 5 % of the best tokens/s.
Results are cached per (model, device, cores, MLX version) in the user's cache, so `doctor`
and `max_batch="auto"` pay for a probe once.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import mlx.core as mx

CANDIDATES = (8, 16, 32, 48, 64)
TOLERANCE = 0.05


@dataclass
class RowsProbe:
    model: str
    rows: int  # the pick
    tok_s: dict = field(default_factory=dict)  # rows -> bare decode tokens/s
    context: int = 128
    key: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def pick_rows(tok_s: dict, tolerance: float = TOLERANCE) -> int:
    """The fewest rows whose tokens/s is within `tolerance` of the best."""
    best = max(tok_s.values())
    return min(int(r) for r, v in tok_s.items() if v >= (1 - tolerance) * best)


def _step_seconds(model, template, rows: int, steps: int) -> float:
    from .slots import SlotBatch

    batch = SlotBatch(template, rows)
    batch.admit(range(rows), template)
    feed = [1] * rows
    times = []
    for _ in range(steps + 1):  # the first step pays for allocation: not counted
        t0 = time.perf_counter()
        mx.eval(mx.argmax(batch.forward(model, feed), axis=-1))
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def probe_rows(model, name: str, candidates: Sequence[int] = CANDIDATES, context: int = 128,
               steps: int = 2) -> RowsProbe:
    """Time the bare decode step at each row count (stopping once past the knee)."""
    from mlx_lm.models.cache import make_prompt_cache

    template = make_prompt_cache(model)
    vocab = model.args.vocab_size if hasattr(model, "args") else 1000
    prompt = mx.random.randint(0, min(vocab, 1000), (1, context), key=mx.random.key(0))
    mx.eval(model(prompt, cache=template))
    tok_s: dict = {}
    for rows in sorted(candidates):
        tok_s[rows] = round(rows / _step_seconds(model, template, rows, steps), 2)
        if tok_s[rows] < (1 - 2 * TOLERANCE) * max(tok_s.values()):
            break  # clearly past the knee: larger batches only get slower
    return RowsProbe(model=name, rows=pick_rows(tok_s), tok_s=tok_s, context=context, key=_key(name))


def _key(name: str) -> str:
    return f"{name}|{mx.default_device()}|{os.cpu_count()}|mlx {mx.__version__}"


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlx-selfdistill" / "rows.json"


def cached_probes() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def cached_rows(name: str) -> Optional[RowsProbe]:
    entry = cached_probes().get(_key(name))
    return RowsProbe(**entry) if entry else None


def store(probe: RowsProbe) -> None:
    from ..jsonl import write_json_atomic

    probes = cached_probes()
    probes[probe.key] = probe.to_dict()
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_path(), probes)
    except OSError:
        pass  # a read-only cache only costs a probe next time


def rows_for(model, name: str) -> RowsProbe:
    """The cached pick for this model here, or a fresh probe (then cached)."""
    probe = cached_rows(name)
    if probe is None:
        probe = probe_rows(model, name)
        store(probe)
    return probe


def rows_report(model_spec: Optional[str] = None) -> list[dict]:
    """What `doctor` prints: the pick for `model_spec` (default: the embedded tiny model),
    probed now unless cached, then every other pick cached on this machine."""
    from ..models import load_model, model_name

    spec = model_spec or "tiny"
    name = model_name(spec)
    model, _ = load_model(spec)
    first = rows_for(model, name)
    here = _key("")[1:]  # this device, cores and MLX version
    others = [RowsProbe(**e) for k, e in cached_probes().items() if k.endswith(here) and k != first.key]
    return [p.to_dict() for p in [first, *others]]
