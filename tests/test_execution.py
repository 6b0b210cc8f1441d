"""Sandbox grading, encoding, the library entry points and the verify command."""

import ctypes
import json
import math
import os
import signal
import subprocess
import textwrap
import threading
import time

import pytest
from click.testing import CliRunner

from mlx_selfdistill.cli import cli, main
from mlx_selfdistill.errors import UserError
from mlx_selfdistill.execution import SandboxPool, verify_file, verify_samples
from mlx_selfdistill.execution.grading import normalise_lines, plan_tests, stdout_equal, values_equal
from mlx_selfdistill.execution.pool import remove_stale_roots
from mlx_selfdistill.execution.protections import AREAS, refusal
from mlx_selfdistill.execution.serialize import NotPlain, decode, to_json
from mlx_selfdistill.jsonl import read_jsonl
from mlx_selfdistill.records import Problem, Sample, Verdict

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox is POSIX-only")

ADD = Problem(id="p/add", prompt="add", entry_point="add",
              tests=[{"type": "call", "input": [1, 2], "output": 3}, {"type": "call", "input": [5, 7], "output": 12}])
HALF = Problem(id="p/half", prompt="half", entry_point="half", tests=[{"type": "call", "input": [1], "output": 0.5}])
SUM_LINES = Problem(id="p/sum", prompt="sum", tests=[
    {"type": "stdio", "input": "2\n1 2\n3 4\n", "output": "3\n7\n"},
    {"type": "stdio", "input": "1\n10 -1\n", "output": "9\n"},
])
HUMANEVAL_STYLE = Problem(id="p/he", prompt="", entry_point="incr", tests=[{"type": "assert", "code": textwrap.dedent("""
    def check(candidate):
        assert candidate(1) == 2
        assert candidate(-1) == 0
        assert all(candidate(x) == x + 1 for x in range(5))
""")}])
SOLUTION_CLASS = Problem(id="p/cls", prompt="", entry_point="twoSum", metadata={"class_name": "Solution"},
                         tests=[{"type": "call", "input": [[2, 7, 11], 9], "output": [0, 1]}])


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, timeout_s=2.0, memory_mb=512) as p:
        yield p


# -- encoding and comparison (pure) --------------------------------------------------------------

def test_encode_roundtrips_plain_values_exactly():
    value = [1, -2**80, 2.5, -0.0, float("inf"), None, True, False, 0, "x", 'q"\\\n\x00é\ud800😀',
             (1, [2]), {"a": 1, 3: (4,), (5, "b"): {}}, [], (), 2**53, -(2**53) + 1, 1e300]
    text = to_json(value)
    assert text.isascii()
    back = decode(json.loads(text))
    assert back == value
    assert [type(x) for x in back] == [type(x) for x in value]  # True stays a bool, tuples stay tuples
    assert type(back[11]) is tuple and type(back[12][3]) is tuple and math.isinf(back[4])
    assert math.copysign(1, back[3]) == -1
    assert math.isnan(decode(json.loads(to_json(float("nan")))))


@pytest.mark.parametrize("value", [type("I", (int,), {})(3), [type("S", (str,), {})("a")], {1, 2}, object(),
                                   b"bytes"])
def test_encode_rejects_anything_not_exactly_plain(value):
    with pytest.raises(NotPlain):
        to_json(value)


def test_encode_caps_depth_and_size():
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(NotPlain):
        to_json(deep)
    with pytest.raises(NotPlain):
        to_json([0] * 10, max_items=5)
    with pytest.raises(NotPlain):
        to_json({1: [0] * 4, 2: 0}, max_items=5)


@pytest.mark.parametrize("bad", [{"$int": 5}, {"$tuple": 1}, {"$dict": [[[1], 2]]}, {"x": 1}, {"$float": "1e5"}])
def test_decode_rejects_malformed_nodes(bad):
    with pytest.raises(NotPlain):
        decode(bad)


def test_values_equal_follows_python_equality_with_float_tolerance():
    assert values_equal(0.1 + 0.2, 0.3) and values_equal([1, 2.0000000001], [1, 2])
    assert not values_equal(0.31, 0.3) and not values_equal((1, 2), [1, 2]) and not values_equal("1", 1)
    assert values_equal({"a": [1.0]}, {"a": [1]}) and not values_equal({"a": 1}, {"b": 1})
    assert not values_equal(float("nan"), float("nan"))
    assert values_equal(1.05, 1.0, rtol=0, atol=0.1) and not values_equal(1.05, 1.0, rtol=0, atol=0.01)


def test_stdout_comparison_normalises_whitespace_only():
    assert normalise_lines("a  b \r\nc\n\n\n") == ["a b", "c"]
    assert stdout_equal("1  2\n3\n", "1 2\n3")
    assert stdout_equal("0.3000000001\n", "0.3\n")
    assert not stdout_equal("1 2\n", "12\n") and not stdout_equal("1\n2\n", "1\n")


def test_plan_keeps_expected_values_out_of_the_child_job():
    plan = plan_tests(HUMANEVAL_STYLE)
    kinds = [t["kind"] for t in plan.child_tests]
    assert kinds == ["call", "call", "assert"]  # two asserts parsed, the generator one is not
    assert all("output" not in t for t in plan.child_tests)
    assert [k.get("output") for k in plan.keys[:2]] == [2, 0]


# -- through the sandbox ----------------------------------------------------------------------------

def test_call_tests_pass_fail_and_float_tolerance(pool):
    assert pool.judge(ADD, "def add(a, b):\n    return a + b\n").status == "pass"
    v = pool.judge(ADD, "def add(a, b):\n    return 3\n", sample_index=4)
    assert (v.status, v.passed_tests, v.total_tests, v.sample_index) == ("fail", 1, 2, 4)
    assert "test 2: expected 12, got 3" in v.detail
    assert pool.judge(HALF, "def half(x):\n    return x / 2 + 1e-9\n").status == "pass"
    assert pool.judge(HALF, "def half(x):\n    return x / 3\n").status == "fail"


def test_stdio_tests_compare_normalised_lines(pool):
    code = "n = int(input())\nfor _ in range(n):\n    a, b = map(int, input().split())\n    print(a + b, '  ')\n"
    assert pool.judge(SUM_LINES, code).status == "pass"
    v = pool.judge(SUM_LINES, "import sys\nprint(3)\nprint(7)\n")
    assert v.status == "fail" and v.passed_tests == 1
    v = pool.judge(SUM_LINES, "raise ValueError('boom')\n")
    assert v.status == "error" and "ValueError: boom" in v.detail


def test_exceptions_missing_entry_point_and_no_tests(pool):
    v = pool.judge(ADD, "def add(a, b):\n    return 1 // 0\n")
    assert v.status == "error" and "ZeroDivisionError" in v.detail
    v = pool.judge(ADD, "def plus(a, b):\n    return a + b\n")
    assert v.status == "error" and "'add' is not defined" in v.detail
    assert pool.judge(Problem(id="none", prompt="", tests=[]), "x = 1").detail == "the problem has no tests"


def test_assert_scripts_are_parsed_and_the_rest_is_graded_in_child(pool):
    v = pool.judge(HUMANEVAL_STYLE, "def incr(x):\n    return x + 1\n")
    assert v.status == "pass" and v.total_tests == 3 and "graded in child" in v.detail
    v = pool.judge(HUMANEVAL_STYLE, "def incr(x):\n    return x + 1 if x != 3 else 0\n")
    assert v.status == "fail" and v.passed_tests == 2 and "AssertionError" in v.detail


def test_solution_class_methods(pool):
    code = textwrap.dedent("""
        class Solution:
            def twoSum(self, nums, target):
                seen = {}
                for i, x in enumerate(nums):
                    if target - x in seen:
                        return [seen[target - x], i]
                    seen[x] = i
    """)
    assert pool.judge(SOLUTION_CLASS, code).status == "pass"


def test_returned_tuples_and_truthy_asserts(pool):
    truthy = Problem(id="t", prompt="", entry_point="is_even", tests=[{"type": "assert", "code": (
        "assert is_even(2)\nassert not is_even(3)\n")}])
    assert pool.judge(truthy, "def is_even(n):\n    return 1 - n % 2\n").status == "pass"
    assert pool.judge(truthy, "def is_even(n):\n    return 1\n").status == "fail"
    pair = Problem(id="pair", prompt="", entry_point="f", tests=[{"type": "call", "input": [], "output": [1, 2]}])
    assert pool.judge(pair, "def f():\n    return (1, 2)\n").status == "fail"  # (1, 2) != [1, 2] in Python


def test_candidates_compile_as_plain_python_whatever_their_size(pool):
    # The sandbox's own `from __future__ import annotations` must not leak into candidates:
    # in plain Python this annotation is evaluated, so the definition fails.
    v = pool.judge(ADD, "def add(a: Undefined, b):\n    return a + b\n")
    assert v.status == "error" and "NameError" in v.detail
    assert pool.judge(ADD, "from __future__ import annotations\ndef add(a: Undefined, b):\n    return a + b\n"
                      ).status == "pass"
    # Sources past the worker's pre-compile size are compiled in the child, same verdicts.
    big = "#" + "x" * 150_000 + "\n"
    assert pool.judge(ADD, big + "def add(a, b):\n    return a + b\n").status == "pass"
    v = pool.judge(ADD, big + "def add(a, b)\n    return a + b\n")
    assert v.status == "error" and "SyntaxError" in v.detail
    v = pool.judge(ADD, big + "def add(a: Undefined, b):\n    return a + b\n")
    assert v.status == "error" and "NameError" in v.detail


def test_each_child_runs_under_its_limits_and_cannot_raise_them(pool):
    # CORE, NOFILE, FSIZE and AS are held by the worker and inherited; CPU and NPROC are set
    # in the child. Each must read soft == hard at the configured value, and raising fails.
    linux = os.uname().sysname == "Linux"
    expected = {"RLIMIT_CORE": [0, 0], "RLIMIT_CPU": [4, 4],  # the 2 s timeout + 2
                "RLIMIT_FSIZE": [2_000_000] * 2, "RLIMIT_NOFILE": [128, 128], "raised": False}
    if linux:
        expected["RLIMIT_AS"] = [512 * 1024 * 1024] * 2
    code = textwrap.dedent("""
        import resource
        def limits(names):
            out = {n: list(resource.getrlimit(getattr(resource, n))) for n in names}
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            try:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard * 2))
                out["raised"] = True
            except (ValueError, OSError):
                out["raised"] = False
            nproc = resource.getrlimit(resource.RLIMIT_NPROC)
            return [out, nproc[0] == nproc[1] and nproc[0] < 100_000]
    """)
    names = [n for n in expected if n != "raised"]
    probe = Problem(id="p/limits", prompt="", entry_point="limits",
                    tests=[{"type": "call", "input": [names], "output": [expected, linux]}])
    v = pool.judge(probe, code)
    assert v.status == "pass", v.detail


def test_judge_many_keeps_order_and_reports_each(pool):
    items = [(ADD, Sample("p/add", i, "", "def add(a, b):\n    return a + b\n" if i % 2 else "oops(")) for i in range(8)]
    seen = []
    verdicts = pool.judge_many(items, on_result=seen.append)
    assert [v.sample_index for v in verdicts] == list(range(8))
    assert [v.status for v in verdicts] == ["error", "pass"] * 4
    assert sorted(v.sample_index for v in seen) == list(range(8))


def test_protections_are_recorded(pool):
    prot = pool.protections
    assert set(AREAS) <= set(prot)
    assert all(isinstance(prot[a]["ok"], bool) and prot[a]["how"] for a in AREAS)
    if os.uname().sysname == "Linux":
        assert prot["filesystem"]["ok"] and "Landlock" in prot["filesystem"]["how"]
        assert prot["network"]["ok"] and prot["processes"]["ok"] and prot["disk"]["ok"]


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="Landlock is Linux-only")
def test_pool_refuses_to_start_without_a_filesystem_allow_list():
    # The worker told to skip Landlock, as it must where the kernel has none.
    refused = SandboxPool(workers=1, timeout_s=2)
    refused.config["landlock"] = False
    with pytest.raises(UserError) as exc:
        refused.start()
    message = str(exc.value)
    assert "\n" not in message and "filesystem" in message and "--unsafe-no-isolation" in message
    assert refused.workers == [] and refused.root is None  # nothing left running
    unsafe = SandboxPool(workers=1, timeout_s=2, unsafe_no_isolation=True)
    unsafe.config["landlock"] = False
    with unsafe:
        assert not unsafe.protections["filesystem"]["ok"]
        assert unsafe.judge(ADD, "def add(a, b):\n    return a + b\n").status == "pass"


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="Landlock is Linux-only")
def test_without_namespaces_landlock_still_holds_and_the_disk_is_measured():
    # As on a kernel that refuses unprivileged user namespaces (e.g. Ubuntu's AppArmor policy).
    p = SandboxPool(workers=1, timeout_s=5, disk_files=20)
    p.config["namespaces"] = False
    with p:
        prot = p.protections
        assert prot["filesystem"]["ok"] and "measured" in prot["disk"]["how"], prot
        many = "def add(a, b):\n    for i in range(500):\n        open('f%d' % i, 'w').close()\n    return a + b\n"
        v = p.judge(ADD, many)
        assert v.status == "output_limit" and "files than the box allows" in v.detail, v
        escape = "def add(a, b):\n    open('../../escaped', 'w').close()\n    return a + b\n"
        v = p.judge(ADD, escape)
        assert v.status == "error" and "PermissionError" in v.detail, v
        assert not os.path.exists(os.path.join(p.root, "escaped"))
        assert p.judge(ADD, "def add(a, b):\n    return a + b\n").status == "pass"


def test_refusal_names_the_missing_area():
    report = {a: {"ok": True, "how": "x"} for a in AREAS}
    assert refusal(report) is None
    report["filesystem"] = {"ok": False, "how": "Landlock unavailable"}
    assert "filesystem" in refusal(report) and "Landlock unavailable" in refusal(report)
    report["filesystem"]["ok"], report["uid"]["ok"] = True, False
    assert refusal(report) is None  # only the filesystem allow-list is required


def test_a_dead_worker_is_replaced(pool):
    victim = pool.workers[0].pid
    os.kill(victim, signal.SIGKILL)
    verdicts = pool.judge_many([(ADD, "def add(a, b):\n    return a + b\n")] * 3)
    assert {v.status for v in verdicts} <= {"pass", "crash"}
    assert pool.judge(ADD, "def add(a, b):\n    return a + b\n").status == "pass"
    assert victim not in [w.pid for w in pool.workers]


def test_jobs_queued_behind_a_timeout_or_a_dead_worker_are_still_judged_in_order():
    # One worker, so jobs queue behind each other; a timeout or a dead worker must cost
    # only the job it was running.
    correct, wrong = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"
    loop = "def add(a, b):\n    while True:\n        pass\n"
    slow = "import time\ndef add(a, b):\n    time.sleep(1.0)\n    return a + b\n"
    with SandboxPool(workers=1, timeout_s=1.5, memory_mb=512) as one:
        items = [(ADD, correct), (ADD, loop), (ADD, correct), (ADD, wrong), (ADD, correct)]
        assert [v.status for v in one.judge_many(items)] == ["pass", "timeout", "pass", "fail", "pass"]
        victim = one.workers[0].pid
        killer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
        killer.start()
        verdicts = one.judge_many([(ADD, slow), (ADD, correct), (ADD, correct)])
        killer.join()
        assert [v.status for v in verdicts] == ["crash", "pass", "pass"]
        assert one.workers[0].pid != victim and one.restarts == 1


def test_replies_that_arrive_together_are_all_read():
    # Freeze this (the pool's) process while its one worker answers two queued jobs, so
    # both replies sit in the pipe at once: neither may wait for a timeout.
    correct = "def add(a, b):\n    return a + b\n"
    slow = "import time\ndef add(a, b):\n    time.sleep(0.3)\n    return a + b\n"
    with SandboxPool(workers=1, timeout_s=2.0, memory_mb=512) as one:
        one.judge(ADD, correct)  # started and warm
        freezer = subprocess.Popen(["sh", "-c", f"sleep 0.1; kill -STOP {os.getpid()}; sleep 1; kill -CONT {os.getpid()}"])
        try:
            t0 = time.monotonic()
            verdicts = one.judge_many([(ADD, slow), (ADD, correct)])
            elapsed = time.monotonic() - t0
        finally:
            freezer.wait()
        assert [v.status for v in verdicts] == ["pass", "pass"]
        assert elapsed < 4.0 and one.restarts == 0  # a missed reply would wait 2 s + 5 s of grace


def test_roots_left_by_killed_pools_are_removed_and_no_others(tmp_path, pool):
    assert os.path.basename(pool.root).startswith(f"mlxsd-sandbox-{os.getpid()}-")
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        stale = tmp_path / f"mlxsd-sandbox-{gone.pid}-x1"
        (stale / "w0" / "box").mkdir(parents=True)
        os.chmod(stale / "w0", 0o511)  # as a worker leaves its folder: not writable
        live = tmp_path / f"mlxsd-sandbox-{alive.pid}-x2"
        live.mkdir()
        unrelated = tmp_path / "mlxsd-sandbox-notapid"
        unrelated.mkdir()
        assert remove_stale_roots(str(tmp_path)) == [str(stale)]
        assert not stale.exists() and live.exists() and unrelated.exists()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="prctl is Linux-only")
def test_the_untyped_prctl_really_sets_the_parent_death_signal():
    from mlx_selfdistill.execution import protect

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # in a throwaway child: the signal is per process
        try:
            ok = protect.die_with_parent(signal.SIGKILL)
            got = ctypes.c_int(-1)
            protect.prctl(2, ctypes.addressof(got))  # PR_GET_PDEATHSIG
            os.write(w, f"{ok} {got.value}".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 100).decode() == f"True {int(signal.SIGKILL)}"
    os.close(r)


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="seccomp is Linux-only")
def test_seccomp_fallback_blocks_inet_sockets():
    code = "import socket\ndef add(a, b):\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    return a + b\n"
    with SandboxPool(workers=1, timeout_s=2, network="seccomp") as p:
        assert p.protections["network"]["how"].startswith("seccomp")
        v = p.judge(ADD, code)
        assert v.status == "error" and "Permission denied" in v.detail
        unix = "import socket\ndef add(a, b):\n    socket.socketpair()\n    return a + b\n"
        assert p.judge(ADD, unix).status == "pass"


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="RSS read from /proc here")
def test_rss_memory_guard_from_outside():
    """The macOS guard (RSS polled by the worker) exercised on Linux with the rlimit off."""
    code = "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n"
    with SandboxPool(workers=1, timeout_s=5, memory_mb=200, memory_guard="rss") as p:
        assert p.protections["memory"] == "rss"
        v = p.judge(ADD, code)
        assert v.status == "memory" and "resident memory" in v.detail, v


# -- library entry points and CLI -------------------------------------------------------------------

def _write_problems_and_samples(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in (ADD, SUM_LINES)))
    codes = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a * b\n", "while True: pass\n"]
    samples = [Sample("p/add", i, c, c) for i, c in enumerate(codes)]
    samples.append(Sample("p/sum", 0, "", "import sys\nd = sys.stdin.read().split()\n"
                                          "print('\\n'.join(str(int(d[1 + 2*i]) + int(d[2 + 2*i])) for i in range(int(d[0]))))\n"))
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in samples))
    return problems, path


def test_verify_samples_and_missing_problem(tmp_path):
    samples = [Sample("p/add", 0, "", "def add(a, b):\n    return a + b\n")]
    assert [v.status for v in verify_samples([ADD], samples, workers=1, timeout_s=2)] == ["pass"]
    with pytest.raises(UserError, match="p/other"):
        verify_samples({"p/add": ADD}, [Sample("p/other", 0, "", "")], workers=1)


@pytest.mark.slow
def test_verify_file_is_resumable(tmp_path):
    problems, samples = _write_problems_and_samples(tmp_path)
    out = tmp_path / "verdicts.jsonl"
    out.write_text(json.dumps(Verdict("p/add", 0, "pass", 2, 2).to_dict()) + "\n" + '{"problem_id": "p/a')  # killed
    events = []
    summary = verify_file(str(problems), samples, out, workers=2, timeout_s=1, progress=lambda s, i: events.append(i))
    assert (summary["judged"], summary["skipped"], summary["verdicts"]) == (3, 1, 4)
    assert summary["by_status"] == {"fail": 1, "pass": 2, "timeout": 1}
    assert sum(e.get("advance", 0) for e in events) == 3
    rows = read_jsonl(out)
    assert len(rows) == 4 and {(r["problem_id"], r["sample_index"]) for r in rows} == {
        ("p/add", 0), ("p/add", 1), ("p/add", 2), ("p/sum", 0)}
    again = verify_file(str(problems), samples, out, workers=2, timeout_s=1)
    assert again["judged"] == 0 and len(read_jsonl(out)) == 4


@pytest.mark.slow
def test_verify_command(tmp_path):
    problems, samples = _write_problems_and_samples(tmp_path)
    out = tmp_path / "v.jsonl"
    res = CliRunner().invoke(cli, ["verify", "--problems", str(problems), str(samples), "-o", str(out),
                                   "--workers", "2", "--timeout", "1", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["verdicts"] == 4 and summary["by_status"]["pass"] == 2
    res = CliRunner().invoke(cli, ["verify", "--problems", str(problems), str(samples), "-o", str(out)])
    assert res.exit_code == 0 and "skipped 4" in res.output
    out.unlink()
    res = CliRunner().invoke(cli, ["verify", "--problems", str(problems), str(samples), "-o", str(out),
                                   "--unsafe-no-isolation", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "sandbox protections" in res.output and "filesystem" in res.output and "in force" in res.output


def test_verify_command_errors_are_one_line(tmp_path, capsys):
    problems, samples = _write_problems_and_samples(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["verify", "--problems", str(problems), str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "v")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: ") and "missing.jsonl" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["verify", "--problems", str(problems), str(samples), "-o", str(tmp_path / "v"), "--workers", "0"])
    assert exc.value.code == 2
