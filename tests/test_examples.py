"""The example notebooks: 01 runs end to end; every notebook is valid, parses and imports resolve;
02/03 stop in their first cell when the hub model is not on this machine."""

import ast
import importlib
import importlib.util
import os
import re
import shutil
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
EXECUTED = {"01_quickstart.ipynb", "04_perf_per_watt.ipynb"}  # stored with their outputs
HUB_NOTEBOOKS = {"02_ssd_qwen_coder.ipynb": ["mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit"],
                 "03_teacher_student.ipynb": ["mlx-community/Qwen2.5-Coder-7B-Instruct-4bit",
                                              "mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit"]}


def _kernel_env() -> dict:
    """The kernel inherits our environment, as a user's would: no preload (the notebooks import
    mlx_selfdistill before mlx, which binds MLX to the pip-installed OpenBLAS)."""
    return dict(os.environ)


def _execute(nb, cwd: Path, timeout: int = 600):
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                                     resources={"metadata": {"path": str(cwd)}})
    return client.execute(env=_kernel_env())


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
    """01 and 04 are stored executed, without errors; 02 and 03 (real models) are stored unexecuted."""
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    if path.name in EXECUTED:
        assert all(c.execution_count is not None for c in cells), "store the executed notebook"
        assert not _errors(nb)
    else:
        assert all(not c.outputs and c.execution_count is None for c in cells), "store it unexecuted"


def _cached(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return False
    return (path / "config.json").exists()


@pytest.mark.parametrize("name", sorted(HUB_NOTEBOOKS))
def test_hub_notebook_first_cell_stops_without_the_model(name, tmp_path):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    first = _code_cells(nb)[0]
    assert "local_files_only=True" in first.source
    if all(_cached(m) for m in HUB_NOTEBOOKS[name]):
        pytest.skip("the models are in the local Hugging Face cache here: the first cell would go on")
    only_first = nbformat.v4.new_notebook(cells=[first], metadata=nb.metadata)
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        _execute(only_first, tmp_path, timeout=120)
    (error,) = [o for o in only_first.cells[0].outputs if o.output_type == "error"]
    assert error.ename == "NotAvailableOffline"
    assert "huggingface-cli download" in error.evalue
    assert not (tmp_path / "runs").exists()  # nothing started


@pytest.mark.slow
def test_quickstart_notebook_runs_end_to_end(tmp_path):
    shutil.copy(EXAMPLES / "01_quickstart.ipynb", tmp_path)
    nb = nbformat.read(tmp_path / "01_quickstart.ipynb", as_version=4)
    for cell in _code_cells(nb):  # start from a clean notebook, not the stored outputs
        cell.outputs, cell.execution_count = [], None

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
    from mlx_selfdistill.report import validate_result
    import json

    bench = json.loads((run / "bench" / "bench.json").read_text())
    validate_result(bench)
    assert set(bench["models"]) == {"base", "distilled"}
    summary = json.loads((run / "loop" / "oneshot-rft" / "summary.json").read_text())
    assert 0.0 <= summary["distilled_pass_at_1"] <= 1.0
    # the charts came out as images
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs) >= 3
