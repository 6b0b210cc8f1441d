"""GGUF -> MLX conversion cost: wall time and peak memory, beside reading the file once.

Each conversion runs in a fresh subprocess (so its peak RSS is its own) into a temporary
folder that is deleted afterwards. The anchor, measured in the same run, is the time to
read and sha256 the GGUF once: the floor any conversion pays. A second `resolve_model`
of the same file (the cache hit every later command sees) is timed too.

    python benchmarks/gguf_import.py --models-dir /work/models                 # 0.5B and 1.5B
    python benchmarks/gguf_import.py --models-dir DIR --only SmolLM2-135M-Instruct.Q4_1.gguf

Writes benchmarks/results/gguf_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_FILES = ["Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf", "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"]
RESULTS = Path(__file__).resolve().parent / "results" / "gguf_import.json"

_CHILD = """
import json, resource, sys, time
from mlx_selfdistill.models import resolve_model
t = time.perf_counter()
folder = resolve_model(sys.argv[1])
first = time.perf_counter() - t
t = time.perf_counter()
assert resolve_model(sys.argv[1]) == folder
again = time.perf_counter() - t
size = sum(p.stat().st_size for p in __import__("pathlib").Path(folder).glob("*.safetensors"))
print(json.dumps({"convert_s": round(first, 1), "cached_resolve_s": round(again, 3), "output_bytes": size,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def measure(path: Path) -> dict:
    from mlx_selfdistill.models.gguf_convert import file_sha256

    t = time.perf_counter()
    file_sha256(path)
    read_s = time.perf_counter() - t
    cache = Path(tempfile.mkdtemp(prefix="gguf-bench-"))
    try:
        env = dict(os.environ, MLX_SELFDISTILL_GGUF_CACHE=str(cache))
        res = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"conversion of {path} failed:\n{res.stderr[-2000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    row.update(file=path.name, gguf_bytes=path.stat().st_size, read_sha256_s=round(read_s, 1),
               convert_over_read=round(row["convert_s"] / max(read_s, 1e-9), 1))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path,
                        default=Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS", ".")))
    parser.add_argument("--only", action="append", help="a GGUF file name in --models-dir (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = [measure(args.models_dir / name) for name in (args.only or DEFAULT_FILES)]
    report = {
        "benchmark": "gguf_import",
        "backend": "cpu (float32 output)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="GGUF -> MLX conversion (CPU, float32)")
    for column in ("file", "GGUF MB", "read+sha256 s", "convert s", "x read", "cached s", "peak RSS MB", "out MB"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["file"], f"{r['gguf_bytes'] / 1e6:.0f}", str(r["read_sha256_s"]), str(r["convert_s"]),
                      str(r["convert_over_read"]), str(r["cached_resolve_s"]), str(r["peak_rss_mb"]),
                      f"{r['output_bytes'] / 1e6:.0f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
