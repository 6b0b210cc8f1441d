"""`mlx-selfdistill doctor` and the platform facts behind it."""

import json
import sys

from click.testing import CliRunner

from mlx_selfdistill import platform_info
from mlx_selfdistill.cli import cli, main

REFERENCE_MAPS = """\
7f1c2a000000-7f1c2a100000 r-xp 00000000 08:01 123 /venv/lib/python3.11/site-packages/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0
7f1c2b000000-7f1c2b100000 r-xp 00000000 08:01 124 /venv/lib/python3.11/site-packages/mlx_cpu.libs/liblapack-86b2c207.so.3.10.0
7f1c2c000000-7f1c2c100000 r-xp 00000000 08:01 125 /usr/lib/x86_64-linux-gnu/libc.so.6
"""
OPENBLAS_MAPS = REFERENCE_MAPS + """\
7f1c2d000000-7f1c2d100000 r-xp 00000000 08:01 126 /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
7f1c2e000000-7f1c2e100000 r-xp 00000000 08:01 127 /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so
"""


def test_doctor_json_via_cli():
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    env = report["environment"]
    assert env["backend"] in ("Metal", "CUDA", "CPU") and env["mlx_version"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["memory_total_bytes"] > 0
    assert [m["name"] for m in report["energy_meters"]] == ["apple-ioreport", "powermetrics", "nvml", "rapl"]
    for m in report["energy_meters"]:
        assert m["available"] or m["reason"]   # every unusable meter says why
    usable = [m["name"] for m in report["energy_meters"] if m["available"]]
    assert report["energy_meter"] == (usable[0] if usable else "none")
    assert report["blas"]["gflops"] > 0 and report["blas"]["status"] in ("ok", "slow-reference-blas")
    assert report["default_model"]["path"].endswith("assets/tiny-coder")
    assert isinstance(report["default_model"]["exists"], bool)
    sandbox = report["sandbox"]
    assert all(isinstance(sandbox[a]["ok"], bool) and sandbox[a]["how"] for a in
               ("filesystem", "network", "processes", "uid", "disk"))
    if sys.platform.startswith("linux"):  # Landlock here: a pool would start
        assert sandbox["filesystem"]["ok"] and sandbox["refused"] is None


def test_doctor_table_via_main(capsys):
    main(["doctor", "--no-blas-check"])  # returns normally on success (exit 0)
    out = capsys.readouterr().out  # the result table goes to stdout
    for word in ("mlx", "energy: rapl", "default model", "energy meter used by bench", "sandbox: what holds",
                 "filesystem", "network", "processes", "uid", "disk"):
        assert word in out
    assert "mlx-selfdistill[nvml]" in out or "energy: nvml" in out  # markup not swallowed


def test_blas_check_flags_reference_blas(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(REFERENCE_MAPS)
    slow = platform_info.blas_check(maps, gflops=2.1)
    if sys.platform == "darwin":
        assert slow["status"] == "ok"  # Accelerate
        return
    assert slow["status"] == "slow-reference-blas" and not slow["optimized"]
    assert slow["fix"] and "LD_PRELOAD" not in slow["fix"]  # the pip-only way, never apt
    assert "libblas" in slow["library"]
    maps.write_text(OPENBLAS_MAPS)
    fast = platform_info.blas_check(maps, gflops=45.0)
    assert fast["status"] == "ok" and fast["optimized"] and fast["fix"] is None
    assert "openblas" in fast["library"]
    # numpy's private OpenBLAS beside MLX's reference BLAS: still slow, and not named as MLX's.
    maps.write_text(REFERENCE_MAPS + "7f1c2f000000-7f1c2f100000 r-xp 00000000 08:01 128 "
                    "/venv/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_-ff651d7f.so\n")
    numpy_only = platform_info.blas_check(maps, gflops=4.6)
    assert numpy_only["status"] == "slow-reference-blas" and not numpy_only["optimized"]


def test_blas_check_in_this_process():
    res = platform_info.blas_check()
    assert res["gflops"] > 0
    if sys.platform == "linux":
        libs = platform_info.loaded_blas_libraries()
        assert libs, "mlx's CPU backend maps a BLAS into the process"
        if res["loader"]["status"] == "loaded":  # how CI runs: blas.py bound MLX to OpenBLAS
            assert res["optimized"] and "openblas" in res["library"], res


def test_cpuinfo_model_name_prefers_model_name(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 49\n"
                 "model name\t: AMD EPYC 7B12\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B12\n")
    assert platform_info.cpuinfo_model_name(f) == "AMD EPYC 7B12"
    f.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
    assert platform_info.cpuinfo_model_name(f) == "Raspberry Pi 5 Model B Rev 1.0"
    assert platform_info.cpuinfo_model_name(tmp_path / "missing") is None


def test_default_model_status(tmp_path):
    missing = platform_info.default_model_status(tmp_path / "tiny-coder")
    assert missing["exists"] is False and "config.json" in missing["missing"]
    d = tmp_path / "model"
    d.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (d / name).write_text("{}")
    assert platform_info.default_model_status(d) == {"path": str(d), "exists": True, "missing": []}
