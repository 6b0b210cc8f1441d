"""What the forked child does: enter the sandbox, run the candidate, report plain data.

Runs in a process forked from a sandbox worker, one per candidate. It never sees an
expected value: it reports what the candidate returned (strictly encoded plain values) or
printed (capped), one ASCII JSON line per test on the report descriptor, and the parent
grades. Stdio programs run in a grandchild per test that does not even hold the report
descriptor. Only assert scripts the parser could not split run here, and say so.

Stdlib only: the worker loads this file directly, without the package.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import signal
import sys
import time

# Siblings on the worker's path (this file runs outside the package); imported here, once
# in the worker, rather than in every child.
from protect import LINUX, apply_limits, die_with_parent, drop_privileges
from serialize import NotPlain, to_json

REPORT_FD = 3
DONE_TEXT = '{"done": true}'
DONE_LINE = (DONE_TEXT + "\n").encode()
MEMORY_EXIT = 86  # a stdio grandchild's exit code for MemoryError
FILE_LIMIT_EXIT = 87  # ... for writing past the file size limit (Python ignores SIGXFSZ: EFBIG)


# Never imported on a candidate's behalf before the uid drop: import-time side effects.
NO_ASSIST = frozenset({"antigravity", "this", "__hello__", "__phello__", "idlelib", "turtle", "turtledemo",
                       "tkinter", "webbrowser", "pip", "ensurepip", "venv", "pydoc", "test", "lib2to3"})


def imported_names(source: str) -> list[str]:
    """Module names in the source's import statements (nothing is run)."""
    import ast

    names = []
    try:
        tree = ast.parse(source)
    except BaseException:
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def assist_imports(source: str) -> None:
    """Import, while still privileged, the installed modules the candidate names.

    Only used when the Python installation is unreadable to the sandbox uid (e.g. pyenv
    under a 0700 /root): the candidate then finds its modules already in sys.modules.
    Modules come from sys.path only (the box is not on it), so this runs installed code."""
    for name in imported_names(source)[:64]:
        if name.split(".")[0] in NO_ASSIST or name in sys.modules:
            continue
        try:
            __import__(name)
        except BaseException:
            pass


def enter_sandbox(report_fd: int, box: str, settings: dict, source: str = "") -> None:
    """Own session, box as cwd, the Landlock domain (and seccomp filter), only fds 0-3 open,
    limits, unprivileged uid, die with the worker.

    Every step here costs page faults in the forked child (the dominant cost of a trivial
    candidate), so whatever can be done once in the worker is done there instead."""
    worker_pid = os.getppid()
    os.setsid()
    os.chdir(box)
    if report_fd != REPORT_FD:
        os.dup2(report_fd, REPORT_FD)
        os.close(report_fd)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # The filesystem allow-list and process scoping, then the metadata filter (both prepared
    # by the worker: one call each here). Before the fds close: the ruleset is one of them.
    ruleset = settings.get("landlock")
    if ruleset is not None and not ruleset.enter():
        raise OSError("could not enter the Landlock domain")
    seccomp = settings.get("seccomp")
    if seccomp is not None and not seccomp.enter():
        raise OSError("could not install the seccomp filter")
    os.closerange(REPORT_FD + 1, max(null + 1, 1 << 16))
    apply_limits(settings["limits"])
    if settings.get("uid") is not None:
        if settings.get("import_assist"):
            assist_imports(source)
        drop_privileges(settings["uid"])
    # After the uid change, which clears it. Without it a candidate could outlive a killed
    # worker: fail closed.
    if not die_with_parent(signal.SIGKILL) and LINUX:
        raise OSError("could not set the parent-death signal")
    if os.getppid() != worker_pid:
        os._exit(0)
    # HOME and TMPDIR already name the box: the pool starts the worker with them.


_pending: list = []
_last_flush = [0.0]
FLUSH_EVERY_S = 0.05  # results reach the parent at least this often (a timeout keeps what came)


def report(obj: dict, *, flush: bool = False) -> None:
    report_line(json.dumps(obj, ensure_ascii=True), flush=flush)


def report_line(text: str, *, flush: bool = False) -> None:
    """Queue one report line (ASCII JSON); write the queue when asked or every FLUSH_EVERY_S.
    Batching saves the parent a wake-up per test on fast candidates."""
    _pending.append(text + "\n")
    now = time.monotonic()
    if flush or now - _last_flush[0] >= FLUSH_EVERY_S:
        data = "".join(_pending).encode("ascii")
        _pending.clear()
        _last_flush[0] = now
        while data:
            data = data[os.write(REPORT_FD, data):]


def describe(exc: BaseException) -> str:
    """`Type: message`, robust to a candidate's hostile __str__."""
    try:
        name = type(exc).__name__
        name = name if type(name) is str else "Exception"
    except BaseException:
        name = "Exception"
    try:
        msg = str(exc)
        msg = msg[:200] if type(msg) is str else ""
    except BaseException:
        msg = ""
    return f"{name}: {msg}" if msg else name


def kind_of(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, RecursionError):
        return "recursion"
    if isinstance(exc, SystemExit):
        return "exit"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "output_limit"
    return "exception"


def compile_candidate(source: str):
    """The candidate's code object, as plain Python compiles it: dont_inherit keeps this
    file's `from __future__ import annotations` out of it. (The worker calls this too.)"""
    return compile(source, "<candidate>", "exec", dont_inherit=True)


def run(job: dict, report_fd: int, box: str, settings: dict) -> None:
    """The child's whole life; always ends in os._exit."""
    try:
        enter_sandbox(report_fd, box, settings, job["code"] if isinstance(job.get("code"), str) else "")
    except BaseException as exc:  # a sandbox we could not set up must not run the candidate
        line = (json.dumps({"setup_error": describe(exc)}) + "\n").encode()
        for fd in (REPORT_FD, report_fd):  # the report fd may have moved to REPORT_FD already
            try:
                os.write(fd, line)
                break
            except OSError:
                pass
        os._exit(71)
    try:
        _last_flush[0] = time.monotonic()
        _run_tests(job, settings)
        report_line(DONE_TEXT, flush=True)
        os._exit(0)
    except BaseException as exc:
        try:
            report({"load_error": "the sandbox itself failed: " + describe(exc), "kind": kind_of(exc)}, flush=True)
        finally:
            os._exit(72)


def _run_tests(job: dict, settings: dict) -> None:
    tests = job["tests"]
    code = settings.get("compiled")  # compiled by the worker before the fork, when it could
    if code is None:
        try:
            code = compile_candidate(job["code"])
        except BaseException as exc:  # SyntaxError, null bytes, unencodable (lone surrogate) source
            report({"load_error": describe(exc), "kind": kind_of(exc)})
            return
    for i, t in enumerate(tests):  # stdio first: each run starts from a clean fork
        if t["kind"] == "stdio":
            report(_run_stdio(i, code, t["stdin"], settings["output_bytes"]))
    if all(t["kind"] == "stdio" for t in tests):
        return

    ns = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(code, ns)
    except BaseException as exc:
        report({"load_error": describe(exc), "kind": kind_of(exc)})
        return
    fn, why = _entry_point(ns, job.get("entry_point"), job.get("class_name"))
    for i, t in enumerate(tests):
        if t["kind"] == "call":
            if fn is None:
                report({"i": i, "error": why, "kind": "exception"})
                continue
            try:
                value = fn()(*t["args"])
            except BaseException as exc:
                report({"i": i, "error": describe(exc), "kind": kind_of(exc)})
                continue
            try:
                report_line('{"i": %d, "value": %s}' % (i, to_json(value)))
            except NotPlain as exc:
                report({"i": i, "error": str(exc), "kind": "not_plain"})
            except BaseException as exc:
                report({"i": i, "error": "could not encode the result: " + describe(exc), "kind": "not_plain"})
        elif t["kind"] == "assert":
            scope = dict(ns)
            try:
                if fn is not None:
                    scope["candidate"] = fn()
                exec(compile(t["code"], "<tests>", "exec", dont_inherit=True), scope)
                report({"i": i, "assert": True})
            except AssertionError as exc:
                report({"i": i, "error": describe(exc), "kind": "assert"})
            except BaseException as exc:
                report({"i": i, "error": describe(exc), "kind": kind_of(exc)})


def _entry_point(ns: dict, name, class_name):
    """A zero-argument factory for the function to call (a fresh instance per test for methods)."""
    if not name:
        return None, "the problem names no entry point"
    if class_name:
        cls = ns.get(class_name)
        if cls is None:
            return None, f"class {class_name!r} is not defined"
        return (lambda: getattr(cls(), name)), ""
    fn = ns.get(name)
    if fn is None:
        return None, f"entry point {name!r} is not defined"
    return (lambda: fn), ""


def _run_stdio(i: int, code, stdin: str, cap: int) -> dict:
    """Run the program once in a grandchild with stdin from a file and stdout to a capped file."""
    paths = [f".stdin{i}", f".stdout{i}", f".stderr{i}"]
    with open(paths[0], "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(stdin)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _stdio_grandchild(code, paths)
    _, status = os.waitpid(pid, 0)
    out = _read_capped(paths[1], cap)
    err = _read_capped(paths[2], 4000)
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass
    res = {"i": i, "stdout": out.decode("utf-8", "replace"), "truncated": len(out) >= cap}
    if os.WIFSIGNALED(status):
        res["signal"] = os.WTERMSIG(status)
    else:
        res["exit"] = os.WEXITSTATUS(status)
    if err:
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        res["stderr_tail"] = lines[-1][:200] if lines else ""
    return res


def _read_capped(path: str, cap: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(cap + 1)
    except OSError:
        return b""


def _stdio_grandchild(code, paths) -> None:
    try:
        fds = [os.open(paths[0], os.O_RDONLY)] + [
            os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for p in paths[1:]]
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.close(REPORT_FD)  # the program cannot write reports
    except BaseException:
        os._exit(73)
    status = 0
    try:
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as exc:
        c = exc.code
        status = 0 if c is None else c if type(c) is int else 1
    except MemoryError:
        status = MEMORY_EXIT
    except OSError as exc:
        status = FILE_LIMIT_EXIT if exc.errno == errno.EFBIG else 1
        _print_traceback()
    except BaseException:
        status = 1
        _print_traceback()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(status & 0xFF)


def _print_traceback() -> None:
    try:
        import traceback
        traceback.print_exc()
    except BaseException:
        pass
