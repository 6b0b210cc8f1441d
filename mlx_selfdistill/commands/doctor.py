"""`mlx-selfdistill doctor`: is this machine ready? Platform, MLX backend, BLAS speed,
memory, energy meters, the default model and the sandbox's protections, each with the fix
when something is off."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ._common import out, print_json, protections_table

_STATUS = {"ok": "[green]ok[/green]", "warn": "[yellow]warn[/yellow]",
           "no": "[dim]no[/dim]", "info": "[dim]-[/dim]"}


def _row_status(ok: bool | None, bad: str = "warn") -> str:
    return _STATUS["info" if ok is None else "ok" if ok else bad]


def render(report: dict) -> None:
    env = report["environment"]
    rows = [
        ["platform", _row_status(None), f"{env['os']} {env['machine']}, Python {env['python']}"],
        ["chip", _row_status(None), f"{env.get('chip') or 'unknown'} ({env.get('cpu_cores')} cores)"],
        ["memory", _row_status(None),
         f"{env['memory_total_gb']} GB" if env.get("memory_total_gb") else "unknown"],
        ["memory bandwidth", _row_status(report["memory_bandwidth_gbs"] is not None, "no"),
         f"{report['memory_bandwidth_gbs']:g} GB/s" if report["memory_bandwidth_gbs"]
         else report["memory_bandwidth_note"]],
        ["mlx", _row_status(env.get("mlx_version") is not None),
         f"{env.get('mlx_version')} backend {env.get('backend')}; mlx-lm {env.get('mlx_lm_version')}"],
    ]
    blas = report.get("blas")
    if blas:
        ok = blas["status"] == "ok"
        text = f"{blas['gflops']:.1f} GFLOP/s float32 matmul; {blas.get('library') or 'no BLAS found'}"
        loader = blas.get("loader") or {}
        if loader.get("status") == "loaded":
            threads = loader.get("threads")
            text += f"\n{loader.get('config') or 'loaded'}, {threads} thread{'' if threads == 1 else 's'}"
            chosen = blas.get("threads") or {}
            if chosen.get("mode") == "auto":
                text += " at start, then as many as the cores other processes leave free"
            elif chosen.get("fixed_by"):
                text += f" (fixed by {chosen['fixed_by']})"
            text += " (libgfortran from the mlx[cpu] wheel)" if loader.get("via") == "symlinks" else ""
            gemv = blas.get("one_row_gemv") or {}
            text += ("\none-row products (batch-1 decode) go to sgemv" if gemv.get("status") == "active"
                     else f"\none-row products stay on sgemm (batch-1 decode about 2x slower): {gemv.get('status')}"
                          + (f", {gemv['detail']}" if gemv.get("detail") else ""))
        elif loader.get("status") not in (None, "not-linux"):
            text += f"\nfast BLAS loader: {loader['status']} ({loader.get('detail')})"
        if not ok:
            text += f"\nslow reference BLAS. Fix: {blas['fix']}"
        rows.append(["cpu blas", _row_status(ok), text])
    for m in report["energy_meters"]:
        text = f"available, boundary {m['boundary']}" if m["available"] else m["reason"]
        rows.append([f"energy: {m['name']}", _row_status(m["available"], "no"), text])
    dm = report["default_model"]
    text = dm["path"] + ("" if dm["exists"] else
                         f"\nmissing {', '.join(dm['missing'])}: build it with "
                         "python -m mlx_selfdistill.toy.build_model")
    rows.append(["default model", _row_status(dm["exists"]), text])
    probes = report.get("decode_rows")
    if isinstance(probes, dict):
        rows.append(["decode rows", _row_status(False), probes["error"]])
    for p in probes or []:
        rates = ", ".join(f"{r}: {v:g}" for r, v in p["tok_s"].items())
        rows.append([f"decode rows: {p['model']}", _row_status(None),
                     f"{p['rows']} (bare decode tokens/s by rows, {p['context']}-token context: {rates}); "
                     "sample --max-batch auto uses it"])
    t = Table(title="mlx-selfdistill doctor")
    t.add_column("check", no_wrap=True)
    t.add_column("status")
    t.add_column("detail", overflow="fold")  # paths must stay whole
    for check, status, detail in rows:
        t.add_row(check, status, escape(detail))  # details hold [extras] and paths
    out.print(t)
    sandbox = report.get("sandbox")
    if sandbox:
        out.print(protections_table(sandbox, "sandbox: what holds for candidates here"))
        if sandbox.get("refused"):
            out.print(f"[yellow]verify will refuse to start:[/yellow] {escape(sandbox['refused'])}")
    meter = report["energy_meter"]
    out.print(f"energy meter used by bench: [bold]{meter}[/bold]"
                  + ("" if meter != "none" else " (energy will be reported as unavailable)"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--no-blas-check", is_flag=True, help="Skip the matmul timing.")
@click.option("--model", "model_spec", default=None,
              help="Probe the decode rows for this model (cached per machine) [the embedded tiny model].")
@click.option("--no-rows-check", is_flag=True, help="Skip the decode-rows probe.")
def doctor(as_json: bool, no_blas_check: bool, model_spec, no_rows_check: bool) -> None:
    """Check the platform: MLX backend, BLAS, memory, energy meters, default model, sandbox."""
    from ..platform_info import diagnose

    from ..execution import inspect_protections

    report = diagnose(run_blas_check=not no_blas_check, rows_model=model_spec, run_rows_check=not no_rows_check)
    report["sandbox"] = inspect_protections()
    if as_json:
        print_json(report)
    else:
        render(report)
