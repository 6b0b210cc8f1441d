"""The records that flow between stages (DESIGN.md). Plain dataclasses <-> JSON objects.

Tests of a Problem are a list of dicts, each one of:
  {"type": "call",  "input": [arg, ...], "output": expected}        # calls entry_point(*input)
  {"type": "stdio", "input": "stdin text", "output": "stdout text"}
  {"type": "assert", "code": "python source"}                        # e.g. HumanEval check()
An assert test's code may refer to the candidate function by `candidate` or by its name.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Iterable, Optional

from .errors import DataError

TEST_TYPES = ("call", "stdio", "assert")
VERDICT_STATUSES = ("pass", "fail", "error", "timeout", "memory", "output_limit", "crash")


def _from_dict(cls, obj: dict, *, path=None, line=None):
    """Build a dataclass from a dict, naming the missing field and ignoring unknown ones."""
    names = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is f.default_factory is MISSING]
    for name in required:
        if name not in obj:
            raise DataError(path or "<record>", f"missing required field for {cls.__name__}", line=line, field=name)
    return cls(**{k: v for k, v in obj.items() if k in names})


def validate_tests(tests: Any, *, path=None, line=None) -> list[dict]:
    if not isinstance(tests, list):
        raise DataError(path or "<record>", "tests must be a list", line=line, field="tests")
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or t.get("type") not in TEST_TYPES:
            raise DataError(path or "<record>", f"test {i} must be an object with type in {TEST_TYPES}",
                            line=line, field="tests")
        needed = ("code",) if t["type"] == "assert" else ("input", "output")
        for key in needed:
            if key not in t:
                raise DataError(path or "<record>", f"test {i} ({t['type']}) lacks '{key}'", line=line,
                                field="tests")
    return tests


@dataclass
class Problem:
    id: str
    prompt: str
    tests: list
    starter_code: str = ""
    entry_point: Optional[str] = None
    difficulty: Optional[str] = None
    source: str = "jsonl"
    # A known-good solution, when the source has one (fixtures, the toy world's corpus).
    canonical_solution: Optional[str] = None
    # Tests held back from the sampler's prompt but used for grading (e.g. LCB private, toy hidden).
    metadata: dict = field(default_factory=dict)

    @property
    def style(self) -> str:
        """'stdio' when graded through stdin/stdout, else 'function'."""
        return "stdio" if self.tests and all(t["type"] == "stdio" for t in self.tests) else "function"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, *, path=None, line=None) -> "Problem":
        p = _from_dict(cls, obj, path=path, line=line)
        if not isinstance(p.id, str) or not p.id:
            raise DataError(path or "<record>", "id must be a non-empty string", line=line, field="id")
        if not isinstance(p.prompt, str):
            raise DataError(path or "<record>", "prompt must be a string", line=line, field="prompt")
        validate_tests(p.tests, path=path, line=line)
        return p


@dataclass
class Sample:
    problem_id: str
    sample_index: int
    completion: str
    code: str
    round: int = 0
    model: str = ""  # fingerprint.model_identity: 'NAME@sha256:HEX[+adapter@sha256:HEX]' ("" in older files)
    prompt_text: str = ""
    finish_reason: str = "stop"  # stop | length | runaway
    num_tokens: int = 0
    mean_logprob: Optional[float] = None  # under the untempered model distribution
    mean_sampling_logprob: Optional[float] = None  # under the tempered, truncated distribution
    sampling: dict = field(default_factory=dict)  # temperature, top_k, top_p, min_p, seed
    # Text before the final code block (a teacher's reasoning), kept for teacher->student.
    reasoning: str = ""
    # The prompt style that produced it (prompts/styles.py); "" in files written before styles.
    prompt_style: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.sample_index)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, *, path=None, line=None) -> "Sample":
        return _from_dict(cls, obj, path=path, line=line)


@dataclass
class Verdict:
    problem_id: str
    sample_index: int
    status: str  # one of VERDICT_STATUSES
    passed_tests: int = 0
    total_tests: int = 0
    duration_s: float = 0.0
    detail: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.sample_index)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, *, path=None, line=None) -> "Verdict":
        v = _from_dict(cls, obj, path=path, line=line)
        if v.status not in VERDICT_STATUSES:
            raise DataError(path or "<record>", f"unknown status {v.status!r}", line=line, field="status")
        return v


def in_key_order(records: Iterable) -> list:
    """Samples or verdicts sorted by (problem_id, sample_index): what a stage reads must not
    depend on the order its input file was written in (a resumed run appends in another order)."""
    return sorted(records, key=lambda r: r.key)


def read_records(path, cls, *, missing_ok: bool = False) -> list:
    """The complete records of a JSONL file as `cls` (Sample, Verdict, Problem); a killed
    writer's partial last line is ignored. A missing file is [] when missing_ok."""
    from pathlib import Path

    from .jsonl import iter_jsonl

    if missing_ok and not Path(path).exists():
        return []
    return [cls.from_dict(obj, path=path, line=line) for line, obj in iter_jsonl(path, allow_partial_tail=True)]
