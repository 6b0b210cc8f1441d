"""Checkpoints for exact resume, written so that a kill at any moment leaves the last
good one intact.

A checkpoint is a folder `checkpoints/step_NNNNNNN/` holding the trainable weights, the
optimizer state (moments, step counter, learning rate) and `state.json` (progress,
data fingerprint, the config it was made with). It is assembled in a hidden temporary
folder, every file fsynced, then renamed into place in one step: a folder with the final
name is complete by construction. The data order and the dropout noise are functions of
(seed, step), so the step number is all a resumed run needs to continue exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import mlx.core as mx
from mlx.utils import tree_flatten

from .adapters import _fsync, trainable_weights

CHECKPOINTS = "checkpoints"
NAME = re.compile(r"^step_(\d{7,})$")


def checkpoint_dir(adapter_dir: Path) -> Path:
    return Path(adapter_dir) / CHECKPOINTS


def list_checkpoints(adapter_dir: Path) -> list[tuple[int, Path]]:
    root = checkpoint_dir(adapter_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = NAME.match(p.name)
        if m and (p / "state.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(adapter_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint that reads back; damaged ones are skipped."""
    for _, path in reversed(list_checkpoints(adapter_dir)):
        try:
            json.loads((path / "state.json").read_text())
            return path
        except (OSError, ValueError):
            continue
    return None


def save_checkpoint(adapter_dir: Path, step: int, model, optimizer, state: dict, keep: int = 2) -> Path:
    root = checkpoint_dir(adapter_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    if final.exists():  # written before a kill that came after the rename: same content
        return final
    tmp = root / f".tmp-step_{step:07d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    mx.save_safetensors(str(tmp / "weights.safetensors"), trainable_weights(model))
    mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
    with open(tmp / "state.json", "w", encoding="utf-8") as fh:
        json.dump({**state, "step": step}, fh, indent=2, default=str)
    for f in tmp.iterdir():
        _fsync(f)
    os.replace(tmp, final)
    _fsync_dir(root)
    prune(adapter_dir, keep)
    return final


def load_checkpoint(path: Path, model, optimizer) -> dict:
    weights = mx.load(str(path / "weights.safetensors"))
    model.load_weights(list(weights.items()), strict=False)
    opt_state = mx.load(str(path / "optimizer.safetensors"))
    optimizer.init(model.trainable_parameters())
    state = optimizer.state
    for key, value in opt_state.items():
        _assign(state, key.split("."), value)
    mx.eval(model.parameters(), optimizer.state)
    return json.loads((path / "state.json").read_text())


def prune(adapter_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints; drop leftovers of writes that were killed."""
    root = checkpoint_dir(adapter_dir)
    for _, path in list_checkpoints(adapter_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    for p in root.glob(".tmp-step_*"):
        if not p.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(p, ignore_errors=True)


def clear_checkpoints(adapter_dir: Path) -> None:
    shutil.rmtree(checkpoint_dir(adapter_dir), ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _assign(tree, path: list[str], value) -> None:
    """Set tree[a][b]... in place (list levels indexed by number), creating dict levels."""
    for part in path[:-1]:
        if isinstance(tree, list):
            tree = tree[int(part)]
        else:
            tree = tree.setdefault(part, {})
    if isinstance(tree, list):
        tree[int(path[-1])] = value
    else:
        tree[path[-1]] = value
