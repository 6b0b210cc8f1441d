"""A sandbox pool run in a process of its own, as root or as an unprivileged user, for the
hostile tests.

Users start the pool as themselves, so the candidates share its uid; the tests run as root
in CI. `HostedPool("user")` therefore starts the pool in a child process that has dropped to
`nobody` (or, when the tests already run unprivileged, as ourselves), in its own session and
process group: a candidate that escaped could at worst kill that process, which shows as a
failed test, not a dead test run. `HostedPool("root")` runs the same server as root. The
server's HOME is a temporary directory holding planted secrets, and its environment holds
a fake token, so the tests can check from outside that nothing leaks.

Run as a script, this file is the server: one JSON request per stdin line, one reply per
stdout line. It needs only the standard library and the package (pool side), so Debian's
/usr/bin/python3 can run it from a copy of the package that `nobody` can read.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET_TOKEN = "hf_HOSTILETESTSECRET0123456789"
SECRET_KEY = "-----BEGIN FAKE OPENSSH PRIVATE KEY----- hostile-test-key"
BASHRC = "# the user's shell settings\n"
NOTES = "the user's notes\n"


def _serve() -> None:
    from mlx_selfdistill.execution import SandboxPool
    from mlx_selfdistill.records import Problem

    def send(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    options = json.loads(sys.stdin.readline())
    fds_before = _open_fds()
    # A process of the pool's user outside the sandbox: the "other program" candidates must not touch.
    canary = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    pool = SandboxPool(**options).start()
    root = pool.root
    send({"pid": os.getpid(), "uid": os.getuid(), "canary": canary.pid, "root": root, "marker": pool.marker,
          "protections": pool.protections, "python": sys.executable})
    for line in sys.stdin:
        request = json.loads(line)
        items = [(Problem.from_dict(p), code) for p, code in request["items"]]
        verdicts = pool.judge_many(items)
        send({"verdicts": [v.to_dict() for v in verdicts], "restarts": pool.restarts,
              "canary_alive": canary.poll() is None})
    pool.close()
    canary_alive = canary.poll() is None
    canary.kill()
    canary.wait()
    send({"closed": True, "canary_alive": canary_alive, "root_exists": os.path.exists(root),
          "leaked_fds": sorted(_open_fds() - fds_before - {str(sys.stdin.fileno())})})


def _open_fds() -> set:
    for where in ("/proc/self/fd", "/dev/fd"):  # Linux, macOS
        if os.path.isdir(where):
            return set(os.listdir(where))
    return set()


# -- the client (in the test process) ----------------------------------------------------------

_copies: dict = {}


def _unprivileged() -> tuple[int, int] | None:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def _package_copy() -> str:
    """The package and this server, copied where any user can read them (the checkout may
    sit under a 0700 home, as /root is here and a CI clone may be)."""
    if "dir" not in _copies:
        dest = tempfile.mkdtemp(prefix="mlxsd-hostile-pkg-")
        os.chmod(dest, 0o755)
        shutil.copytree(ROOT / "mlx_selfdistill", os.path.join(dest, "mlx_selfdistill"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "assets"))
        shutil.copy(__file__, os.path.join(dest, "sandbox_host.py"))
        for dirpath, dirnames, filenames in os.walk(dest):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        atexit.register(shutil.rmtree, dest, True)
        _copies["dir"] = dest
    return _copies["dir"]


def unprivileged_python() -> tuple[str | None, str]:
    """(an interpreter `nobody` can run the server with, or None; why not)."""
    ids = _unprivileged()
    if ids is None:
        return None, "no 'nobody' user on this machine"
    if "python" in _copies:
        return _copies["python"], ""
    copy = _package_copy()
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if not os.path.exists(python):
            continue
        try:
            probe = subprocess.run([python, "-c", "import mlx_selfdistill.execution"], cwd="/", capture_output=True,
                                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": copy}, user=ids[0], group=ids[1],
                                   extra_groups=[], timeout=60)
        except OSError:  # e.g. pyenv's python under a 0700 /root
            continue
        if probe.returncode == 0:
            _copies["python"] = python
            return python, ""
    return None, f"no Python that 'nobody' can run (tried {sys.executable} and /usr/bin/python3)"


def mode_available(mode: str) -> tuple[bool, str]:
    if mode == "root":
        return (os.geteuid() == 0, "the pool runs as root only when the tests do")
    if os.name != "posix":
        return False, "POSIX only"
    if os.geteuid() != 0:
        return True, ""
    python, why = unprivileged_python()
    return python is not None, why


def make_home(owner: tuple[int, int] | None) -> str:
    """A temporary HOME with a planted SSH key, token, .bashrc and notes. Everything is
    world-readable (and .bashrc and notes world-writable), so that only the sandbox's
    allow-list, not file modes, keeps candidates out. Under /home (or our own home), as a
    user's is: not under /tmp, which the sandbox replaces with a private mount anyway."""
    base = "/home" if os.geteuid() == 0 and os.access("/home", os.W_OK) else os.path.expanduser("~")
    home = tempfile.mkdtemp(prefix="mlxsd-hostile-home-", dir=base)
    files = {".ssh/id_rsa": SECRET_KEY, ".cache/huggingface/token": SECRET_TOKEN, ".bashrc": BASHRC,
             "notes.txt": NOTES}
    for rel, text in files.items():
        path = os.path.join(home, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o666 if rel in (".bashrc", "notes.txt") else 0o644)
    for dirpath, dirnames, filenames in os.walk(home):
        os.chmod(dirpath, 0o755)
        if owner:
            os.chown(dirpath, *owner)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), *owner)
    return home


class HostedPool:
    """A SandboxPool in a server process, as root or unprivileged; judge/judge_many like the
    real one, verdicts as records."""

    def __init__(self, mode: str, home: str, **options):
        from mlx_selfdistill.records import Verdict

        self.Verdict = Verdict
        self.mode = mode
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "HF_TOKEN": SECRET_TOKEN,
               "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
        kwargs: dict = {}
        if mode == "user" and os.geteuid() == 0:
            python, why = unprivileged_python()
            assert python, why
            copy = _package_copy()
            script = os.path.join(copy, "sandbox_host.py")
            env["PYTHONPATH"] = copy
            uid, gid = _unprivileged()
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        else:
            python, script = sys.executable, __file__
            env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen([python, "-B", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd="/", env=env, start_new_session=True, text=True, **kwargs)
        self.proc.stdin.write(json.dumps(options) + "\n")
        self.proc.stdin.flush()
        info = self._read()
        self.pid, self.uid, self.canary = info["pid"], info["uid"], info["canary"]
        self.root, self.marker, self.protections = info["root"], info["marker"], info["protections"]
        self.restarts, self.canary_alive = 0, True

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(10)
            raise AssertionError(f"the pool's process died (exit {code}): a candidate reached outside its tree")
        return json.loads(line)

    def judge_many(self, items) -> list:
        payload = [[problem.to_dict(), code] for problem, code in items]
        self.proc.stdin.write(json.dumps({"items": payload}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        self.restarts, self.canary_alive = reply["restarts"], reply["canary_alive"]
        return [self.Verdict.from_dict(v) for v in reply["verdicts"]]

    def judge(self, problem, code):
        return self.judge_many([(problem, code)])[0]

    def close(self) -> dict:
        self.proc.stdin.close()
        try:
            result = self._read()
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
            self.proc.stdout.close()
        return result


if __name__ == "__main__":
    _serve()
