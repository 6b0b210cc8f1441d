"""Progress bars with --json: stdout carries only the JSON; the bars go to stderr when it is a
terminal (a long `bench --json` in a shell shows its progress) and nowhere when it is not."""

import json
import os
import pty
import select
import subprocess
import sys

CHILD = r"""
import json
from mlx_selfdistill.commands._progress import StageProgress
with StageProgress(json_stdout=True) as progress:
    progress("sample", {"where": "base 1/2", "advance": 1, "total": 3})
print(json.dumps({"ok": True}))
"""


def _run(stderr_is_terminal: bool) -> tuple[str, str]:
    env = dict(os.environ, COLUMNS="100", TERM="xterm")
    if not stderr_is_terminal:
        done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    leader, follower = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    stdout = child.stdout.read().decode()
    child.wait(timeout=60)
    seen = b""
    while select.select([leader], [], [], 0.5)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child's end closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert child.returncode == 0
    return stdout, seen.decode(errors="replace")


def test_json_stdout_with_a_terminal_stderr_still_draws_the_bars():
    stdout, stderr = _run(stderr_is_terminal=True)
    assert json.loads(stdout) == {"ok": True}  # nothing but the result on stdout
    assert "sample base 1/2" in stderr and "1/3" in stderr


def test_json_stdout_with_a_captured_stderr_draws_nothing():
    stdout, stderr = _run(stderr_is_terminal=False)
    assert json.loads(stdout) == {"ok": True}
    assert "sample" not in stderr
