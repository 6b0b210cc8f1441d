"""Grading in the parent: what the child ran, against expected values it never saw.

`plan_tests` turns a Problem's tests into the child's job (inputs only) and the grading
key (expected values, tolerances). `grade` reads the child's report (untrusted text:
every line is decoded strictly and checked) and returns a Verdict.
"""

from __future__ import annotations

import json
import math
import signal
from dataclasses import dataclass, field

from ..problems.assert_parser import AssertParseError, parse_test_script
from ..records import Problem, Verdict
from .serialize import NotPlain, decode

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-6
MEMORY_EXIT = 86  # child.MEMORY_EXIT
FILE_LIMIT_EXIT = 87  # child.FILE_LIMIT_EXIT
SHORT = 60  # characters of a value shown in a verdict's detail


@dataclass
class Plan:
    """One problem's tests, split into what the child gets and what only the parent keeps."""
    child_tests: list = field(default_factory=list)  # [{"kind": "call", "args"} | {"kind": "stdio", "stdin"} | ...]
    keys: list = field(default_factory=list)  # the graded test dicts, same order
    entry_point: str | None = None
    class_name: str | None = None

    @property
    def in_child(self) -> int:
        return sum(t["kind"] == "assert" for t in self.child_tests)


def expand_tests(problem: Problem) -> list[dict]:
    """The problem's tests with assert scripts split into call tests where their shape allows."""
    out = []
    for t in problem.tests:
        if t["type"] != "assert":
            out.append(t)
            continue
        try:
            out.extend(parse_test_script(t["code"], problem.entry_point))
        except AssertParseError:
            out.append(t)  # runs in the child as it is; its SyntaxError is the candidate's error
    return out


def plan_tests(problem: Problem) -> Plan:
    plan = Plan(entry_point=problem.entry_point, class_name=(problem.metadata or {}).get("class_name"))
    for t in expand_tests(problem):
        if t["type"] == "call":
            args = t["input"] if isinstance(t["input"], list) else [t["input"]]
            # Sent as JSON inside the job (tuples arrive as lists) and parsed by the worker with
            # it: a json.loads in every forked child cost that child ~35 page faults.
            plan.child_tests.append({"kind": "call", "args": args})
        elif t["type"] == "stdio":
            plan.child_tests.append({"kind": "stdio", "stdin": str(t["input"])})
        else:
            plan.child_tests.append({"kind": "assert", "code": t["code"]})
        plan.keys.append(t)
    return plan


# -- comparisons ---------------------------------------------------------------------------

def values_equal(got, expected, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> bool:
    """Python equality on plain values, with a tolerance wherever a float is involved."""
    num = (int, float)
    if isinstance(got, num) and isinstance(expected, num):
        if isinstance(got, float) or isinstance(expected, float):
            if math.isnan(got) or math.isnan(expected):
                return False
            return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol)
        return got == expected
    if type(got) is not type(expected):
        return False
    if isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(values_equal(a, b, rtol=rtol, atol=atol) for a, b in zip(got, expected))
    if isinstance(got, dict):
        return got.keys() == expected.keys() and all(values_equal(got[k], expected[k], rtol=rtol, atol=atol) for k in got)
    return got == expected


def normalise_lines(text: str) -> list[str]:
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _token_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isfinite(x) and math.isfinite(y) and math.isclose(x, y, rel_tol=DEFAULT_RTOL, abs_tol=DEFAULT_ATOL)


def stdout_equal(got: str, expected: str) -> bool:
    """Whitespace-normalised lines; numeric tokens compare with a float tolerance."""
    g, e = normalise_lines(got), normalise_lines(expected)
    if g == e:
        return True
    if len(g) != len(e):
        return False
    for a, b in zip(g, e):
        ta, tb = a.split(), b.split()
        if len(ta) != len(tb) or not all(_token_equal(x, y) for x, y in zip(ta, tb)):
            return False
    return True


def _short(value) -> str:
    try:
        text = repr(value)
    except Exception:  # a value too big to print (a huge int)
        text = "<unprintable>"
    return text if len(text) <= SHORT else text[:SHORT - 3] + "..."


# -- reading the report ----------------------------------------------------------------------

def parse_report(text: str, n_tests: int) -> tuple[dict, dict]:
    """(per-test results by index, flags) from the child's report lines; junk lines are ignored."""
    results: dict[int, dict] = {}
    flags: dict = {}
    for line in text.split("\n"):
        if not line:
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("done") is True:
            flags["done"] = True
        elif isinstance(obj.get("load_error"), str) and "load_error" not in flags:
            flags["load_error"], flags["load_kind"] = obj["load_error"][:200], str(obj.get("kind", ""))
        elif isinstance(obj.get("setup_error"), str):
            flags["setup_error"] = obj["setup_error"][:200]
        elif type(obj.get("i")) is int and 0 <= obj["i"] < n_tests and obj["i"] not in results:
            results[obj["i"]] = obj
    return results, flags


def judge_test(key: dict, res: dict | None) -> tuple[str, str]:
    """(outcome, why) of one test: outcome in pass / fail / error / memory / output_limit / missing."""
    if res is None:
        return "missing", "no result"
    kind = res.get("kind")
    if "error" in res and key["type"] != "stdio":
        why = str(res["error"])[:120]
        if kind in ("memory", "output_limit"):
            return kind, why
        if kind == "not_plain":
            return ("output_limit" if "more than" in why else "fail"), why
        return ("fail" if kind == "assert" else "error"), why
    if key["type"] == "call":
        if "value" not in res:
            return "error", "malformed result"
        try:
            got = decode(res["value"])
        except (NotPlain, ValueError, RecursionError) as exc:
            return "fail", f"returned a non-plain value ({exc})"
        expected = key["output"]
        if key.get("compare") == "truthy":
            ok = bool(got) == bool(expected)
        elif "atol" in key or "rtol" in key:
            ok = values_equal(got, expected, rtol=float(key.get("rtol", 0.0)), atol=float(key.get("atol", 0.0)))
        else:
            ok = values_equal(got, expected)
        return ("pass", "") if ok else ("fail", f"expected {_short(expected)}, got {_short(got)}")
    if key["type"] == "stdio":
        if res.get("truncated"):
            return "output_limit", "printed more than the output limit"
        sig = res.get("signal")
        if sig is not None:
            if sig == signal.SIGXFSZ:
                return "output_limit", "printed more than the output limit"
            return "error", f"killed by {_signame(sig)}"
        code = res.get("exit")
        if code == MEMORY_EXIT:
            return "memory", "MemoryError"
        if code == FILE_LIMIT_EXIT:
            return "output_limit", "wrote past the file size limit"
        if code not in (0, None):
            return "error", f"exit code {code}: {str(res.get('stderr_tail', ''))[:120]}"
        got = res.get("stdout")
        if not isinstance(got, str):
            return "error", "malformed result"
        if stdout_equal(got, str(key["output"])):
            return "pass", ""
        return "fail", f"expected {_short(key['output'])}, got {_short(got)}"
    return ("pass", "") if res.get("assert") is True else ("error", "malformed result")


def _signame(sig) -> str:
    try:
        return signal.Signals(sig).name
    except (ValueError, TypeError):
        return f"signal {sig}"


STATUS_ORDER = ("timeout", "memory", "output_limit", "crash", "error", "fail")


def grade(plan: Plan, reply: dict, problem_id: str, sample_index: int, timeout_s: float) -> Verdict:
    n = len(plan.keys)
    verdict = Verdict(problem_id, sample_index, "error", 0, n, float(reply.get("duration_s", 0.0)), "")
    if n == 0:
        verdict.detail = "the problem has no tests"
        return verdict
    results, flags = parse_report(str(reply.get("report", "")), n)
    outcomes = [judge_test(k, results.get(i)) for i, k in enumerate(plan.keys)]
    verdict.passed_tests = sum(o == "pass" for o, _ in outcomes)
    note = f"; {plan.in_child} assert test(s) graded in child" if plan.in_child else ""
    tally = f" ({verdict.passed_tests}/{n} tests passed)"
    reason = reply.get("reason")

    def done(status: str, detail: str) -> Verdict:
        verdict.status = status
        verdict.detail = (detail + note)[:300]
        if status != "pass":
            verdict.passed_tests = min(verdict.passed_tests, n - 1) if n else 0
        return verdict

    if reason == "worker_died":
        return done("crash", "the sandbox worker died during the run (did the candidate kill it?)" + tally)
    if reason == "worker_error":
        return done("error", "sandbox error: " + str(reply.get("error", ""))[:150])
    if flags.get("setup_error"):
        return done("error", "sandbox setup failed: " + flags["setup_error"])
    if flags.get("load_error"):
        kind = flags.get("load_kind")
        status = kind if kind in ("memory", "output_limit") else "error"
        prefix = "exited while loading" if kind == "exit" else "could not load the program"
        return done(status, f"{prefix}: {flags['load_error']}")
    if reason == "timeout":
        return done("timeout", f"no result within {timeout_s:g}s{tally}")
    if reason == "output_limit":
        return done("output_limit", "the program's output exceeded the limit" + tally)
    if reason == "disk_limit":
        return done("output_limit", "wrote more bytes or files than the box allows" + tally)
    if reason == "memory":
        return done("memory", "resident memory exceeded the limit" + tally)
    if not flags.get("done"):
        sig = reply.get("signal")
        if sig == signal.SIGXFSZ:
            return done("output_limit", "wrote past the file size limit" + tally)
        if sig == signal.SIGXCPU:
            return done("timeout", "CPU time limit exceeded" + tally)
        if sig is not None:
            return done("crash", f"killed by {_signame(sig)}" + tally)
        return done("error", f"exited (code {reply.get('exit')}) before finishing the tests" + tally)
    for status in STATUS_ORDER:
        for i, (o, why) in enumerate(outcomes):
            if o == status or (status == "fail" and o == "missing"):
                return done(status, f"test {i + 1}: {why}{tally}")
    return done("pass", f"{n}/{n} tests passed")
