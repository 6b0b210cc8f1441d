"""Bad GGUF inputs end in one line naming the file and the fix, exit code 2, no traceback."""

import numpy as np
import pytest

from gguf_files import tiny_model, write_gguf

from mlx_selfdistill.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_SELFDISTILL_GGUF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))


def good_file(tmp_path):
    source, config = tiny_model("llama")
    return write_gguf(tmp_path / "good.gguf", source, config, "llama", "Q8_0")


def not_gguf(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights\n")
    return path


def truncated(tmp_path):
    data = good_file(tmp_path).read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(len(data) * 0.7)])  # an interrupted download
    return path


def header_cut(tmp_path):
    path = tmp_path / "stub.gguf"
    path.write_bytes(good_file(tmp_path).read_bytes()[:200])
    return path


def bare_gguf(path, arch: str):
    """A GGUF naming `arch` with one tensor and none of the architecture's metadata."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def unsupported_arch(tmp_path):
    return bare_gguf(tmp_path / "mamba.gguf", "mamba")


def unsupported_quant(tmp_path):
    import gguf

    qt = gguf.GGMLQuantizationType.Q8_1  # gguf can neither quantize nor dequantize it
    source, config = tiny_model("llama")
    raw = np.zeros((2, gguf.GGML_QUANT_SIZES[qt][1]), np.uint8)
    return write_gguf(tmp_path / "q81.gguf", source, config, "llama", extra_tensors={"blk.0.extra.weight": (raw, qt)})


def incomplete(tmp_path):
    return bare_gguf(tmp_path / "bare.gguf", "llama")  # an architecture, but none of its metadata


CASES = {
    "missing": (lambda tmp: tmp / "nowhere.gguf", "no such GGUF file"),
    "not a GGUF": (not_gguf, "not a GGUF file"),
    "truncated": (truncated, "truncated or corrupt GGUF file"),
    "header cut": (header_cut, "truncated or corrupt GGUF file"),
    "architecture": (unsupported_arch, "unsupported GGUF architecture 'mamba'"),
    "quant type": (unsupported_quant, "unsupported quant type Q8_1"),
    "incomplete": (incomplete, "GGUF metadata lacks llama.attention.head_count"),
    "ollama": (lambda tmp: "ollama:nothere:7b", "no such Ollama model"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_reports_bad_gguf_in_one_line(case, tmp_path, capsys):
    make, message = CASES[case]
    spec = str(make(tmp_path))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--model", spec, "--problems", "toy", "--limit", "1", "-o", str(tmp_path / "s.jsonl")])
    lines = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2
    assert not any("Traceback" in line for line in lines), lines
    # The error is one line; a file that looks like a GGUF may get the "first use" line before it.
    assert lines[-1].startswith("error: ") and message in lines[-1], lines
    assert len(lines) == 1 or (len(lines) == 2 and "first use" in lines[0]), lines
    assert not (tmp_path / "s.jsonl").exists()
