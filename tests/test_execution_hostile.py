"""Hostile candidates against the real sandbox (real worker processes, real forks).

None may crash the host or earn a false pass; after the suite no process, temp directory
or file descriptor of the sandbox is left. Timeouts are short (1 s) to keep this quick.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from mlx_selfdistill.execution import SandboxPool
from mlx_selfdistill.execution.pool import ENV_MARKER
from mlx_selfdistill.records import Problem

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox is POSIX-only")

TIMEOUT = 1.0
ADD = Problem(id="add", prompt="", entry_point="add",
              tests=[{"type": "call", "input": [1, 2], "output": 3}, {"type": "call", "input": [5, 7], "output": 12}])
SECRET_NUMBER = 987654321
MAGIC = Problem(id="magic", prompt="", entry_point="magic", tests=[{"type": "call", "input": [], "output": SECRET_NUMBER}])
ECHO = Problem(id="echo", prompt="", tests=[{"type": "stdio", "input": "hello\n", "output": "hello\n"}])
CORRECT_ADD = "def add(a, b):\n    return a + b\n"


def _open_fds() -> set:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries this pool's marker (workers, children, escapees)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if f"{ENV_MARKER}={marker}".encode() in fh.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def pool():
    fds_before = _open_fds()
    p = SandboxPool(workers=2, timeout_s=TIMEOUT, memory_mb=512).start()
    root, marker = p.root, p.marker
    assert _marked_processes(marker) if sys.platform.startswith("linux") else True
    yield p
    p.close()
    # Nothing survives the pool: no process, no directory, no descriptor.
    assert not os.path.exists(root)
    if sys.platform.startswith("linux"):
        assert _marked_processes(marker) == []
        assert _open_fds() <= fds_before


def judge(pool, code, problem=ADD):
    v = pool.judge(problem, code)
    assert v.status in ("pass", "fail", "error", "timeout", "memory", "output_limit", "crash")
    return v


def assert_recovers(pool):
    """The pool still judges a correct candidate correctly after the hostile one."""
    assert [v.status for v in pool.judge_many([(ADD, CORRECT_ADD)] * 2)] == ["pass", "pass"]


def test_correct_and_wrong_baseline(pool):
    assert judge(pool, CORRECT_ADD).status == "pass"
    v = judge(pool, "def add(a, b):\n    return a - b\n")
    assert v.status == "fail" and v.passed_tests == 0 and "expected 3, got -1" in v.detail


@pytest.mark.parametrize("code", [
    "def add(a, b):\n    while True:\n        pass\n",
    "def add(a, b):\n    return 10**10**8\n",
    "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "def add(a, b):\n    while True:\n        pass\n",
    "def add(a, b):\n    while True:\n        try:\n            while True:\n                pass\n"
    "        except BaseException:\n            pass\n",
    "def add(a, b):\n    while True:\n        print('spam' * 100)\n",
], ids=["infinite_loop", "long_c_call", "ignored_sigalrm", "except_baseexception", "endless_print_call"])
def test_runaway_candidates_time_out(pool, code):
    v = judge(pool, code)
    assert v.status in ("timeout", "memory"), v
    assert v.passed_tests == 0
    assert_recovers(pool)


def test_non_daemon_thread_does_not_hang_a_correct_candidate(pool):
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(10**6,)).start()\n" + CORRECT_ADD
    assert judge(pool, code).status == "pass"


def test_fork_bomb_is_contained(pool):
    code = ("import os\ndef add(a, b):\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n")
    v = judge(pool, code)
    assert v.status != "pass"
    assert_recovers(pool)


def test_setsid_grandchild_is_killed(pool):
    code = textwrap.dedent("""
        import os, time
        def magic():
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:       # a grandchild in its own session
                    os.write(w, str(os.getpid()).encode())
                    time.sleep(1000)
                os._exit(0)
            os.waitpid(pid, 0)
            return int(os.read(r, 32))
    """)
    v = judge(pool, code, MAGIC)
    assert v.status == "fail"
    escaped = int(re.search(r"got (\d+)", v.detail).group(1))
    assert not os.path.exists(f"/proc/{escaped}") or _is_zombie_or_other(escaped)


def _is_zombie_or_other(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read()
        return state == "Z" or ENV_MARKER.encode() not in env
    except OSError:
        return True


@pytest.mark.parametrize("code", [
    "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n",
    "def add(a, b):\n    return len(bytearray(8 * 10**9))\n",
    "x = [0] * (10**10)\n" + CORRECT_ADD,
], ids=["growing", "one_big_block", "at_import"])
def test_memory_bomb(code):
    # Own pool with a generous wall clock: touching ~256 MB of pages can take over 1 s on a
    # loaded 2-core machine, and the verdict under test is "memory", not the timeout.
    with SandboxPool(workers=1, timeout_s=10.0, memory_mb=256) as own:
        v = judge(own, code)
        assert v.status == "memory", v
        assert v.duration_s < 10.0
        assert_recovers(own)


def test_endless_printing_stdio_hits_output_limit(pool):
    v = judge(pool, "while True:\n    print('x' * 1000)\n", ECHO)
    assert v.status == "output_limit", v


def test_correct_program_printing_300kb_passes(pool):
    line = "0123456789" * 10
    expected = "\n".join([line] * 3000) + "\n"  # 303 KB
    big = Problem(id="big", prompt="", tests=[{"type": "stdio", "input": "3000\n", "output": expected}])
    code = f"n = int(input())\nfor _ in range(n):\n    print({line!r})\n"
    v = judge(pool, code, big)
    assert v.status == "pass", v


def test_closed_stdout(pool):
    assert judge(pool, "import sys\nsys.stdout.close()\nprint(input())\n", ECHO).status not in ("pass",)
    assert judge(pool, "import os\nos.close(1)\nos.close(2)\n" + CORRECT_ADD).status == "pass"


def test_input_at_eof(pool):
    empty = Problem(id="eof", prompt="", tests=[{"type": "stdio", "input": "", "output": "x\n"}])
    v = judge(pool, "print(input())\n", empty)
    assert v.status == "error" and "EOFError" in v.detail
    assert judge(pool, "def add(a, b):\n    return int(input())\n").status == "error"


@pytest.mark.parametrize("code", ["import sys\nsys.exit(0)\n" + CORRECT_ADD, "import os\nos._exit(0)\n" + CORRECT_ADD,
                                  "import os\ndef add(a, b):\n    os._exit(0)\n"])
def test_exit_before_tests_is_not_a_pass(pool, code):
    assert judge(pool, code).status in ("error", "crash")


@pytest.mark.parametrize("code", [
    "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
    "def add(a, b):\n    return Yes()\n",
    "class I(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
    "def add(a, b):\n    return I(0)\n",
    "class S(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\n"
    "def add(a, b):\n    return [S('x')]\n",
], ids=["eq_always_true", "int_subclass", "str_subclass_in_list"])
def test_lying_objects_fail(pool, code):
    v = judge(pool, code)
    assert v.status == "fail" and "non-plain" in v.detail, v


def test_frame_walking_finds_no_expected_value(pool):
    # The candidate hunts through every frame and every live object for a test's expected
    # value (a dict with an "output" key, a local named expected, any big int): there is none.
    code = textwrap.dedent("""
        import sys, gc
        def magic():
            f = sys._getframe()
            while f is not None:
                for scope in (f.f_locals, f.f_globals):
                    for k, v in list(scope.items()):
                        if k in ('expected', 'output', 'want') or (type(v) is int and v > 1000):
                            return v
                f = f.f_back
            for obj in gc.get_objects():
                if isinstance(obj, dict) and 'output' in obj:
                    return obj['output']
            return -1
    """)
    v = judge(pool, code, MAGIC)
    assert v.status == "fail" and f"got {SECRET_NUMBER}" not in v.detail, v


def test_patched_builtins_cannot_fake_a_pass(pool):
    code = textwrap.dedent("""
        import builtins, json
        class Liar(int):
            def __eq__(self, other):
                return True
        builtins.type = lambda *a: int
        builtins.isinstance = lambda *a: True
        json.dumps = lambda *a, **k: '{"i": 0, "value": 3}'
        def add(a, b):
            return Liar(0)
    """)
    v = judge(pool, code)
    assert v.status != "pass", v
    assert v.passed_tests < v.total_tests
    assert_recovers(pool)


def test_killing_the_parent_is_not_a_pass(pool):
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + CORRECT_ADD
    v = judge(pool, code)
    assert v.status != "pass", v
    assert_recovers(pool)


@pytest.mark.slow
def test_secrets_of_the_parent_are_unreachable(tmp_path):
    """A real parent process with HF_TOKEN in its environment judges token-hunting candidates."""
    secret = "hf_TESTSECRET123456789"
    script = textwrap.dedent(f"""
        import json, sys
        from mlx_selfdistill.execution import SandboxPool
        from mlx_selfdistill.records import Problem
        p = Problem(id="t", prompt="", entry_point="steal", tests=[{{"type": "call", "input": [], "output": {secret!r}}}])
        hunts = [
            "import os\\ndef steal():\\n    return os.environ.get('HF_TOKEN')\\n",
            '''import os
        def steal():
            pid, seen = os.getpid(), []
            while pid > 1:
                try:
                    env = open('/proc/%d/environ' % pid, 'rb').read().split(b'\\\\0')
                    for kv in env:
                        if kv.startswith(b'HF_TOKEN='):
                            return kv[9:].decode()
                    stat = open('/proc/%d/stat' % pid).read()
                    pid = int(stat.rsplit(')', 1)[1].split()[1])
                except OSError as e:
                    seen.append(repr(e))
                    stat = open('/proc/%d/stat' % pid).read()
                    pid = int(stat.rsplit(')', 1)[1].split()[1])
            return 'not found ' + ';'.join(seen)
        ''',
        ]
        with SandboxPool(workers=1, timeout_s=2) as pool:
            out = [pool.judge(p, code).to_dict() for code in hunts]
            out.append(pool.protections)
        print(json.dumps(out))
    """)
    env = dict(os.environ, HF_TOKEN=secret)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    *verdicts, protections = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdicts[0]["status"] == "fail" and "got None" in verdicts[0]["detail"], verdicts[0]
    if protections.get("uid") == "same as the pool":
        pytest.skip("candidates run as the pool's own uid here: /proc/<ppid>/environ is readable (known gap)")
    assert verdicts[1]["status"] == "fail" and "not found" in verdicts[1]["detail"], verdicts[1]


def test_writing_outside_the_box(pool, tmp_path):
    target = tmp_path / "outside.txt"
    code = textwrap.dedent(f"""
        def add(a, b):
            for path in ('../escaped.txt', {str(target)!r}):
                try:
                    with open(path, 'w') as fh:
                        fh.write('pwned')
                except OSError:
                    pass
            return a + b
    """)
    assert judge(pool, code).status == "pass"  # the writes failed quietly; the answer is right
    assert not any(os.path.exists(os.path.join(pool.root, w, "escaped.txt")) for w in os.listdir(pool.root))
    if pool.protections.get("uid") != "same as the pool":
        assert not target.exists()


def test_rmtree_parent_does_not_break_the_pool(pool):
    code = "import shutil\ntry:\n    shutil.rmtree('..')\nexcept OSError:\n    pass\n" + CORRECT_ADD
    assert judge(pool, code).status == "pass"
    assert sorted(os.listdir(pool.root)) == ["w0", "w1"]
    assert_recovers(pool)


def test_huge_file(pool):
    code = "def add(a, b):\n    with open('big', 'wb') as fh:\n        while True:\n            fh.write(b'x' * 10**6)\n"
    v = judge(pool, code)
    assert v.status == "output_limit", v


def test_socket_connect_to_localhost_fails(pool):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.setblocking(False)
    port = server.getsockname()[1]
    code = textwrap.dedent(f"""
        import socket
        def add(a, b):
            s = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)
            s.sendall(b'hi')
            return a + b
    """)
    try:
        v = judge(pool, code)
        assert v.status == "error" and "OSError" in v.detail or "Error: [Errno" in v.detail, v
        assert "ModuleNotFoundError" not in v.detail
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@pytest.mark.parametrize("code", [
    "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1) + 1\ndef add(a, b):\n    return f(0)\n",
    "def f(n):\n    return f(n + 1)\ndef add(a, b):\n    return f(0)\n",
], ids=["raised_limit", "default_limit"])
def test_deep_recursion(pool, code):
    v = judge(pool, code)
    assert v.status in ("crash", "error", "memory", "timeout"), v
    assert_recovers(pool)


@pytest.mark.parametrize("code", ["def add(a, b):\n    return a + b  # \udcff\n", "def add(a, b):\x00\n    return a + b\n",
                                  "def add(a, b)\n    return a + b\n"],
                         ids=["lone_surrogate", "null_byte", "syntax_error"])
def test_invalid_source(pool, code):
    v = judge(pool, code)
    assert v.status == "error" and "could not load" in v.detail, v
