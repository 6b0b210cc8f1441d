"""Bench report: one result dict -> bench.json, bench.md, bench.png and a terminal table.

The result dict (schema_version 2):

    {
      "schema_version": 2,
      "created_at": "2025-03-14T09:26:53Z",
      "config": {"model": ..., "adapter": ..., "teacher": ..., "problems": ..., "n": ..., "trials": ...},
      "environment": {... platform_info.environment(), "energy_meter": "none",
                      "memory_bandwidth_gbs": 100.0 | None},
      "idle": IdleBaseline.to_dict(),          # {"status": "measured"|"unavailable", ...}
      "models": {                              # "base", with an adapter "distilled",
        "base": {                              # with a teacher "teacher"
          "model": ..., "adapter": None, "weight_bytes": int, "read_bytes_per_token": int,
          "speed": {"prefill_tok_s", "decode_tok_s", "batched_tok_s", "batch_size", "trials"},
          "quality": metrics.summarize_quality(...),
          "mean_output_tokens": float, "generated_tokens": int,
          "energy": {"generation": phase_energy(...), "verification": phase_energy(...)},
          "memory": {"weights_gb", "peak_gb", "working_gb", "process_peak_gb"},  # bench.memory_block
          "efficiency": efficiency_block(...),  # None values = unavailable
        },
        "distilled": {...}, "teacher": {...},
      },
      "definitions": metrics.DEFINITIONS,
    }

Energy entries are `{"status": "unavailable", "reason": ...}` when no meter exists;
every energy-derived number is then None and printed as "unavailable".

Version 2 only added keys (config.teacher, models.teacher, models.*.memory); a version 1
file still renders, its memory rows "unavailable" (weights from weight_bytes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from . import metrics
from .decoding import caption
from .jsonl import write_json_atomic

SCHEMA_VERSION = 2
UNAVAILABLE = "unavailable"
MODEL_ORDER = ("base", "distilled", "teacher")

REQUIRED_MODEL_KEYS = ("speed", "quality", "mean_output_tokens", "energy", "efficiency")
REQUIRED_TOP_KEYS = ("schema_version", "environment", "idle", "models", "definitions")


# -- building blocks for the bench command ------------------------------------------

def _phase_j(phase: dict | None, key: str) -> float | None:
    if not phase or phase.get("status") != "measured":
        return None
    return phase.get(key)


def efficiency_block(quality: dict, energy: dict, generated_tokens: int,
                     decode_tok_s: float | None, read_bytes_per_token: int | None,
                     bandwidth_gbs: float | None) -> dict:
    """Energy-efficiency and bandwidth numbers of one model (None = unavailable).

    J/solve counts generation + verification (what solving costs); tokens/J and
    pass@1 per watt use the generation phase. Gross numbers are the headline; net
    (idle subtracted) ones are given beside them when an idle baseline exists.
    """
    gen, ver = energy.get("generation"), energy.get("verification")
    gen_gross, gen_net = _phase_j(gen, "gross_j"), _phase_j(gen, "net_j")
    ver_gross, ver_net = _phase_j(ver, "gross_j"), _phase_j(ver, "net_j")
    solve_gross = None if gen_gross is None else gen_gross + (ver_gross or 0.0)
    solve_net = None if gen_net is None else gen_net + (ver_net or 0.0)
    passing = int(quality.get("passing_samples", 0))
    watts = metrics.mean_watts(gen_gross, gen["duration_s"]) if gen_gross is not None else None
    return {
        "joules_per_solve": metrics.joules_per_solve(solve_gross, passing),
        "joules_per_solve_net": metrics.joules_per_solve(solve_net, passing),
        "tokens_per_joule": metrics.tokens_per_joule(generated_tokens, gen_gross),
        "tokens_per_joule_net": metrics.tokens_per_joule(generated_tokens, gen_net),
        "mean_watts": watts,
        "pass1_per_watt": metrics.pass1_per_watt(quality.get("pass_at_1"), watts),
        "bandwidth_fraction": (metrics.bandwidth_fraction(decode_tok_s, read_bytes_per_token, bandwidth_gbs)
                               if read_bytes_per_token else None),
    }


def validate_result(result: dict) -> None:
    """Raise ValueError naming every missing key (a bench bug, not a user error)."""
    missing = [k for k in REQUIRED_TOP_KEYS if k not in result]
    for name, model in (result.get("models") or {}).items():
        missing += [f"models.{name}.{k}" for k in REQUIRED_MODEL_KEYS if k not in model]
    if not result.get("models"):
        missing.append("models.base")
    if missing:
        raise ValueError(f"bench result is missing: {', '.join(missing)}")


# -- rows shared by the terminal table, the markdown and the chart --------------------

def _get(model: dict, path: str) -> Any:
    cur: Any = model
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _num(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return UNAVAILABLE
    if isinstance(x, float) and abs(x) < 10 ** -digits and x != 0:
        return f"{x:.3g}"
    return f"{x:,.{digits}f}"


def _gb(x: Any) -> str:
    """Three significant digits: a 3.5 MB tiny model and a 7B one both stay readable."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return UNAVAILABLE
    return f"{x:,.0f}" if x >= 100 else f"{x:#.3g}"


def _pct(x: Any) -> str:
    return UNAVAILABLE if x is None else f"{100 * x:.1f}%"


def _pass1(model: dict) -> str:
    q = model.get("quality") or {}
    p, ci = q.get("pass_at_1"), q.get("pass_at_1_ci")
    if p is None:
        return UNAVAILABLE
    text = f"{100 * p:.1f}%"
    if ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _energy(model: dict, phase: str) -> str:
    entry = _get(model, f"energy.{phase}")
    if not entry or entry.get("status") != "measured":
        return UNAVAILABLE
    text = f"{entry['gross_j']:,.1f}"
    if entry.get("net_j") is not None:
        text += f" (net {entry['net_j']:,.1f})"
    return text


# (label, cell formatter, numeric value for the ratio column, higher is better)
Row = tuple[str, Callable[[dict], str], Callable[[dict], float | None], bool]


def _rows(result: dict) -> list[Row]:
    def num(path, digits=1):
        return (lambda m: _num(_get(m, path), digits)), (lambda m: _get(m, path))

    rows: list[Row] = []

    def add(label, path, higher=True, digits=1):
        fmt, val = num(path, digits)
        rows.append((label, fmt, val, higher))

    add("Prefill tok/s", "speed.prefill_tok_s")
    add("Decode tok/s (batch 1)", "speed.decode_tok_s")
    add("Batched sampling tok/s", "speed.batched_tok_s")
    rows.append(("Decode / bandwidth limit", lambda m: _pct(_get(m, "efficiency.bandwidth_fraction")),
                 lambda m: _get(m, "efficiency.bandwidth_fraction"), True))
    rows.append(("pass@1 [95% CI]", _pass1, lambda m: _get(m, "quality.pass_at_1"), True))
    ks = sorted({int(k) for m in result["models"].values()
                 for k in (_get(m, "quality.pass_at_k") or {}) if int(k) != 1})
    for k in ks:
        rows.append((f"pass@{k}", lambda m, k=k: _pct(_get(m, f"quality.pass_at_k.{k}")),
                     lambda m, k=k: _get(m, f"quality.pass_at_k.{k}"), True))
    add("Mean output tokens", "mean_output_tokens", higher=False)
    rows.append(("Peak memory GB", lambda m: _gb(_get(m, "memory.peak_gb")),
                 lambda m: _get(m, "memory.peak_gb"), False))
    rows.append(("Weights GB", lambda m: _gb(_weights_gb(m)), _weights_gb, False))
    rows.append(("Generation energy J", lambda m: _energy(m, "generation"),
                 lambda m: _get(m, "energy.generation.gross_j"), False))
    rows.append(("Verification energy J", lambda m: _energy(m, "verification"),
                 lambda m: _get(m, "energy.verification.gross_j"), False))
    add("Mean power W (generation)", "efficiency.mean_watts", higher=False, digits=2)
    add("J per solve", "efficiency.joules_per_solve", higher=False, digits=2)
    add("Tokens per J", "efficiency.tokens_per_joule", digits=2)
    add("pass@1 per W", "efficiency.pass1_per_watt", digits=4)
    return rows


def _weights_gb(model: dict) -> float | None:
    """From the memory block, or from weight_bytes in a version 1 file."""
    gb = _get(model, "memory.weights_gb")
    return gb if gb is not None else (model["weight_bytes"] / 1e9 if model.get("weight_bytes") else None)


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if denominator in (None, 0) or numerator is None:
        return ""
    return f"x{numerator / denominator:.2f}"


def model_names(result: dict) -> list[str]:
    """The models in display order: base, distilled, teacher, then any other."""
    return [n for n in MODEL_ORDER if n in result["models"]] + \
           [n for n in result["models"] if n not in MODEL_ORDER]


def ratio_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(numerator, denominator) of each ratio column: what distilling changed (distilled /
    base), and what the student costs next to its teacher (distilled, else base, / teacher)."""
    pairs = [("distilled", "base")] if {"base", "distilled"} <= set(names) else []
    student = next((n for n in ("distilled", "base") if n in names), None)
    if "teacher" in names and student:
        pairs.append((student, "teacher"))
    return pairs


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison: metric, one column per model, the ratios."""
    names = model_names(result)
    models = result["models"]
    pairs = ratio_pairs(names)
    header = ["Metric", *names] + [f"{a} / {b}" for a, b in pairs]
    out = []
    for label, fmt, val, _ in _rows(result):
        row = [label, *[fmt(models[n]) for n in names]]
        row += [_ratio(val(models[a]), val(models[b])) for a, b in pairs]
        out.append(row)
    return header, out


def energy_summary(result: dict) -> str:
    """One line: which meter measured what, or why energy is unavailable."""
    env, idle = result["environment"], result["idle"]
    meter = env.get("energy_meter", "none")
    if idle.get("status") != "measured" and meter == "none":
        return f"Energy: {UNAVAILABLE} ({idle.get('reason') or 'no energy meter'})"
    first = next(iter(result["models"].values()))
    gen = _get(first, "energy.generation") or {}
    boundary = gen.get("boundary", "?")
    estimate = " (estimate)" if gen.get("is_estimate") else ""
    idle_text = (f"idle {idle['watts']:.2f} W over {idle['duration_s']:.0f} s"
                 if idle.get("status") == "measured" else "idle baseline unavailable")
    return f"Energy: {meter}, boundary {boundary}{estimate}; {idle_text}"


def environment_summary(env: dict) -> str:
    parts = [env.get("chip") or env.get("machine") or "unknown chip",
             f"{env['memory_total_gb']} GB" if env.get("memory_total_gb") else None,
             env.get("os"),
             f"MLX {env.get('mlx_version')} ({env.get('backend')}"
             + (f", BLAS {Path(env['cpu_blas']).name}" if env.get("cpu_blas") else "") + ")",
             f"mlx-lm {env.get('mlx_lm_version')}" if env.get("mlx_lm_version") else None]
    return ", ".join(p for p in parts if p)


def setup_summary(result: dict) -> str | None:
    """One line: what was sampled and how (None when the result has no config)."""
    c = result.get("config") or {}
    if not c:
        return None
    parts = [f"{c.get('num_problems', '?')} problems from {c.get('problems')}" if c.get("problems") else None,
             f"n={c['n']} samples each" if c.get("n") else None,
             f"T={c['temperature']:g}" if c.get("temperature") is not None else None,
             f"top_k={c['top_k']}" if c.get("top_k") else None,
             f"top_p={c['top_p']:g}" if c.get("top_p") not in (None, 1.0) else None,
             f"max {c['max_tokens']} tokens" if c.get("max_tokens") else None,
             f"{c['trials']} interleaved trials" if c.get("trials") else None]
    text = "Setup: " + ", ".join(p for p in parts if p)
    note = result.get("environment", {}).get("memory_bandwidth_note")
    if result.get("environment", {}).get("memory_bandwidth_gbs") is None and note:
        text += f". Bandwidth limit: {note}"
    return text


# -- outputs ---------------------------------------------------------------------------

def render_markdown(result: dict) -> str:
    validate_result(result)
    header, rows = table_rows(result)
    lines = ["# mlx-selfdistill bench", "",
             f"Machine: {environment_summary(result['environment'])}", "",
             *([setup_summary(result), ""] if setup_summary(result) else []),
             energy_summary(result), "",
             *([caption(result["config"]), ""] if result.get("config") else []),
             "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Definitions:", ""]
    lines += [f"- **{k}**: {v}" for k, v in result["definitions"].items()]
    return "\n".join(lines) + "\n"


def render_table(result: dict):
    """A rich Table for the terminal."""
    from rich.markup import escape
    from rich.table import Table

    validate_result(result)
    header, rows = table_rows(result)
    # escape: the caption holds install hints like "pip install 'mlx-selfdistill[nvml]'"
    text = energy_summary(result) + (("\n" + caption(result["config"])) if result.get("config") else "")
    t = Table(title="mlx-selfdistill bench", caption=escape(text))
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[("[dim]" + c + "[/dim]") if c == UNAVAILABLE else c for c in r])
    return t


# (panel title, value path, with CI error bars)
CHART_PANELS = [
    ("Decode tok/s (batch 1)", "speed.decode_tok_s"),
    ("Batched sampling tok/s", "speed.batched_tok_s"),
    ("pass@1", "quality.pass_at_1"),
    ("Joules per solve (lower is better)", "efficiency.joules_per_solve"),
    ("Tokens per joule", "efficiency.tokens_per_joule"),
    ("pass@1 per watt", "efficiency.pass1_per_watt"),
    ("Peak memory GB (lower is better)", "memory.peak_gb"),
]


def render_chart(result: dict, path: str | Path) -> Path:
    """Bars per model for the key metrics; a panel without data says 'unavailable'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    validate_result(result)
    names = model_names(result)
    colors = ["#8c8c8c", "#2a7ab9", "#d9822b", "#4c9a2a"]
    columns = math.ceil(len(CHART_PANELS) / 2)
    fig = Figure(figsize=(4 * columns, 6.5), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, columns)
    for ax in axes.flat[len(CHART_PANELS):]:
        ax.set_visible(False)
    for ax, (title, pathkey) in zip(axes.flat, CHART_PANELS):
        ax.set_title(title, fontsize=10)
        values = [_get(result["models"][n], pathkey) for n in names]
        if all(v is None for v in values):
            ax.text(0.5, 0.5, UNAVAILABLE, ha="center", va="center", fontsize=13,
                    color="#888888", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        heights = [v if v is not None else 0.0 for v in values]
        yerr = None
        if pathkey == "quality.pass_at_1":
            cis = [_get(result["models"][n], "quality.pass_at_1_ci") for n in names]
            if all(cis):
                yerr = [[h - ci[0] for h, ci in zip(heights, cis)],
                        [ci[1] - h for h, ci in zip(heights, cis)]]
        bars = ax.bar(names, heights, color=colors[:len(names)], yerr=yerr, capsize=4)
        for bar, v in zip(bars, values):
            label = UNAVAILABLE if v is None else f"{v:.3g}"
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="left" if yerr else "center", va="bottom", fontsize=8,
                        xytext=(4 if yerr else 0, 2), textcoords="offset points")
        ax.margins(y=0.15)
    fig.suptitle(environment_summary(result["environment"]), fontsize=9)
    footer = energy_summary(result)
    fig.text(0.5, 0.01, footer if len(footer) <= 160 else footer[:157] + "...",
             ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_report(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write bench.json, bench.md and bench.png into out_dir; returns their paths."""
    validate_result(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "bench.png"}
    write_json_atomic(paths["json"], result)
    paths["md"].write_text(render_markdown(result), encoding="utf-8")
    render_chart(result, paths["png"])
    return paths
