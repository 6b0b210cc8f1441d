"""The macOS Seatbelt profile: its rules, checked on every platform by parsing the profile
text the way a Scheme reader does; and, on macOS only, the real sandbox-exec holding a
hostile candidate in.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

from mlx_selfdistill.execution import seatbelt
from mlx_selfdistill.execution.seatbelt import SeatbeltPaths, render_profile, sbpl_string, seatbelt_paths


# -- a small s-expression reader (strings as Str, symbols and numbers as plain str) -----------
class Str(str):
    """A string literal in the profile (as opposed to a symbol)."""


ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def read_sexprs(text: str) -> list:
    stack: list[list] = [[]]
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == ";":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c == "(":
            stack.append([])
            i += 1
        elif c == ")":
            assert len(stack) > 1, f"unbalanced ')' at {i}"
            done = stack.pop()
            stack[-1].append(done)
            i += 1
        elif c == '"':
            out, i = [], i + 1
            while text[i] != '"':
                if text[i] == "\\":
                    assert text[i + 1] in ESCAPES, f"unexpected escape \\{text[i + 1]}"
                    out.append(ESCAPES[text[i + 1]])
                    i += 2
                else:
                    out.append(text[i])
                    i += 1
            stack[-1].append(Str("".join(out)))
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in ' \t\r\n()";':
                j += 1
            stack[-1].append(text[i:j])
            i = j
    assert len(stack) == 1, "unbalanced '('"
    return stack[0]


def rules(profile: str) -> list:
    forms = read_sexprs(profile)
    assert all(isinstance(f, list) for f in forms)
    return forms


def ops_of(rule: list) -> list[str]:
    return [x for x in rule[1:] if isinstance(x, str) and not isinstance(x, Str)]


def filters_of(rule: list) -> list[list]:
    return [x for x in rule[1:] if isinstance(x, list)]


def op_matches(pattern: str, op: str) -> bool:
    return pattern == op or (pattern.endswith("*") and op.startswith(pattern[:-1]))


def filter_matches(f: list, path: str) -> bool:
    kind, value = f[0], f[1]
    assert isinstance(value, Str)
    if kind == "literal":
        return path == value
    if kind == "subpath":
        return path == value or path.startswith(value.rstrip("/") + "/")
    raise AssertionError(f"unexpected path filter {kind}")


def allowed(profile: str, op: str, path: str) -> bool:
    """Whether some allow rule grants `op` on the (resolved) path. The profile holds no deny
    rule but the default, which the tests check, so any matching allow decides."""
    for rule in rules(profile):
        if rule[0] == "allow" and any(op_matches(o, op) for o in ops_of(rule)):
            if any(filter_matches(f, path) for f in filters_of(rule)):
                return True
    return False


def fake_layout(tmp_path):
    """A home with secrets and a pyenv Python inside it (the usual Mac setup)."""
    home = tmp_path / "Users" / "alice"
    prefix = home / ".pyenv" / "versions" / "3.12.4"
    site_packages = prefix / "lib" / "python3.12" / "site-packages"
    site_packages.mkdir(parents=True)
    (site_packages / "numpy.py").write_text("")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----")
    (home / ".bashrc").write_text("")
    root = tmp_path / "T" / "mlxsd-sandbox-1-abc" / "w0"
    root.mkdir(parents=True)
    return home, prefix, site_packages, root


def profile_of(tmp_path, **kw):
    home, prefix, site_packages, root = fake_layout(tmp_path)
    paths = seatbelt_paths(str(root), home=str(home), executables=[str(prefix / "bin" / "python3.12")],
                           python_dirs=[str(prefix), str(site_packages)], **kw)
    return render_profile(paths), paths, home, prefix, site_packages, root


# -- the rules ---------------------------------------------------------------------------------
def test_profile_is_deny_by_default_with_no_network_and_no_blanket_allow(tmp_path):
    profile, *_ = profile_of(tmp_path)
    forms = rules(profile)
    assert forms[0] == ["version", "1"] and forms[1] == ["deny", "default"]
    for rule in forms[2:]:
        assert rule[0] == "allow", f"only the default may deny (allows decide alone): {rule}"
        assert ops_of(rule), f"an allow without an operation: {rule}"
        assert "default" not in ops_of(rule)
        assert not any(op_matches(o, "network-outbound") or o.startswith("network") for o in ops_of(rule))
        # Every allow is narrowed by a filter, except fork (which stays in the sandbox).
        assert filters_of(rule) or ops_of(rule) == ["process-fork"], rule
    assert not allowed(profile, "network-outbound", "/private/var/run/mDNSResponder")
    # No hard links or clones (separate operations, not file-write*): a link from the temp
    # dir to a file outside would let writes through the link's allowed name.
    for op in ("file-link", "file-clone", "mach-lookup", "ipc-posix-shm-read-data", "iokit-open"):
        assert not any(op_matches(o, op) for r in forms[2:] for o in ops_of(r)), op
    assert ["allow", "signal", ["target", "same-sandbox"]] in forms
    assert ["allow", "process-info*", ["target", "same-sandbox"]] in forms


def test_writes_only_inside_the_worker_temp_dir(tmp_path):
    profile, paths, home, prefix, _, root = profile_of(tmp_path)
    assert paths.write_paths == (str(root),)
    for rule in rules(profile):
        write_ops = [o for o in ops_of(rule) if o.startswith("file-write")]
        if rule[0] == "allow" and write_ops:
            for f in filters_of(rule):
                ok = (f[0] == "subpath" and f[1] == str(root)) or (f == ["literal", "/dev/null"]
                                                                   and write_ops == ["file-write-data"])
                assert ok, f"a write outside the temp dir: {rule}"
    assert allowed(profile, "file-write-create", str(root / "box" / "out.txt"))
    assert allowed(profile, "file-write-data", "/dev/null")
    for outside in (str(root.parent / "w1" / "x"), str(root.parent), "/tmp/x", "/private/tmp/x", "/private/var/tmp/x",
                    "/dev/shm/x", str(home / ".bashrc"), str(prefix / "lib" / "evil.pth"), "/dev/zero"):
        assert not allowed(profile, "file-write-data", outside), outside
        assert not allowed(profile, "file-write-unlink", outside), outside


def test_home_is_unreadable_except_the_interpreter_inside_it(tmp_path):
    profile, paths, home, prefix, site_packages, root = profile_of(tmp_path)
    assert allowed(profile, "file-read-data", str(site_packages / "numpy.py"))
    assert allowed(profile, "file-map-executable", str(prefix / "lib" / "python3.12" / "lib-dynload" / "_ssl.so"))
    assert allowed(profile, "process-exec", str(prefix / "bin" / "python3.12"))
    for secret in (home / ".ssh" / "id_rsa", home / ".ssh", home / ".bashrc", home / ".aws" / "credentials",
                   home / ".cache" / "huggingface" / "token", home / ".pyenv" / "version"):
        assert not allowed(profile, "file-read-data", str(secret)), secret
        assert not allowed(profile, "file-read-metadata", str(secret)), secret
    # The home itself is only a directory on the way: its entry, never what lies below it.
    assert str(home) in paths.lookup_paths
    assert not any(filter_matches(["subpath", Str(p)], str(home / ".ssh")) for p in paths.read_paths)
    # No exec but the interpreter: no shell, no other binary.
    for other in ("/bin/sh", "/usr/bin/curl", str(root / "box" / "a.out")):
        assert not allowed(profile, "process-exec", other)
    assert not allowed(profile, "file-map-executable", str(root / "box" / "evil.so"))


def test_an_interpreter_dir_that_is_the_home_or_above_it_is_dropped(tmp_path):
    home, prefix, site_packages, root = fake_layout(tmp_path)
    for bad in (str(home), str(home.parent), "/"):
        paths = seatbelt_paths(str(root), home=str(home), executables=[str(prefix / "bin" / "python3.12")],
                               python_dirs=[bad, str(site_packages)])
        profile = render_profile(paths)
        assert allowed(profile, "file-read-data", str(site_packages / "numpy.py"))
        assert not allowed(profile, "file-read-data", str(home / ".ssh" / "id_rsa")), bad


def test_the_current_interpreter_is_readable_and_the_real_home_is_not(tmp_path):
    """This machine's own Python (pyenv under /root here): its stdlib and this package are
    readable, the real home's secrets are not."""
    root = tmp_path / "w0"
    root.mkdir()
    home = os.path.realpath(os.path.expanduser("~"))
    profile = render_profile(seatbelt_paths(str(root), home=home))
    assert allowed(profile, "file-read-data", os.path.realpath(os.__file__))
    assert allowed(profile, "file-read-data", os.path.realpath(seatbelt.__file__))
    assert allowed(profile, "file-read-data", os.path.realpath(os.path.join(seatbelt.EXECUTION_DIR, "worker.py")))
    assert allowed(profile, "process-exec", os.path.realpath(sys.executable))
    assert allowed(profile, "process-exec", sys.executable)
    for secret in (".ssh/id_rsa", ".bashrc", ".zshrc", ".aws/credentials", ".cache/huggingface/token"):
        assert not allowed(profile, "file-read-data", os.path.join(home, secret)), secret


HOSTILE_NAMES = [
    'evil") (allow default) (allow network* (remote ip "*:*")) (allow file-write* (subpath "x',
    'back\\slash\\") (allow default) ;',
    "new\nline (allow default)",
    "par(en)s ) ) ) (deny default",
    'tab\tand "quotes" and \\"escaped\\" quotes',
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_path_names_cannot_add_rules(name):
    benign = seatbelt_paths("/sandbox/benign/w0", home="/Users/u", executables=["/opt/py/bin/python3"],
                            python_dirs=["/opt/py"], resolve=lambda p: p)
    root = f"/sandbox/{name}/w0"
    hostile = seatbelt_paths(root, home="/Users/u", executables=[f"/opt/{name}/bin/python3"],
                             python_dirs=[f"/opt/{name}"], resolve=lambda p: p)
    good, bad = rules(render_profile(benign)), rules(render_profile(hostile))
    # Same rules, same operations, same number of filters: only the path strings differ.
    assert [(r[0], ops_of(r), len(filters_of(r))) for r in bad] == [(r[0], ops_of(r), len(filters_of(r)))
                                                                   for r in good]
    write_rule = [r for r in bad if "file-write*" in ops_of(r)]
    assert write_rule == [["allow", "file-read*", "file-write*", ["subpath", root]]]
    assert ["literal", f"/opt/{name}/bin/python3"] in [r for r in bad if "process-exec" in ops_of(r)][0]
    assert f"/opt/{name}" in [f[1] for r in bad for f in filters_of(r) if f[0] == "subpath"]
    assert not any("default" in ops_of(r) for r in bad[2:]) and not any(
        o.startswith("network") for r in bad for o in ops_of(r))
    assert len(render_profile(hostile).splitlines()) == len(render_profile(benign).splitlines())


def test_a_rule_without_paths_is_refused_not_left_unconditional():
    with pytest.raises(ValueError):
        render_profile(SeatbeltPaths(exec_paths=(), read_paths=("/usr/lib",), write_paths=()))
    paths = seatbelt_paths(None, home="/Users/u", executables=[""], python_dirs=["/opt/py"], resolve=lambda p: p)
    assert paths.exec_paths == ()  # an empty sys.executable is not read as the current directory


def test_sbpl_string_escapes_and_refuses_nul():
    assert sbpl_string('a"b\\c') == '"a\\"b\\\\c"'
    assert read_sexprs(sbpl_string('x" ) (allow default')) == [Str('x" ) (allow default')]
    with pytest.raises(ValueError):
        sbpl_string("a\0b")


def macos_resolve(path: str) -> str:
    """realpath as on macOS, where /tmp, /var and /etc are links into /private."""
    for link in ("/tmp", "/var", "/etc"):
        if path == link or path.startswith(link + "/"):
            return "/private" + path
    return path


def test_tmp_and_var_are_resolved_to_private():
    root = "/var/folders/zz/abc/T/mlxsd-sandbox-7-q/w0"
    paths = seatbelt_paths(root, home="/Users/u", executables=["/Users/u/proj/.venv/bin/python"],
                           python_dirs=["/Users/u/proj/.venv", "/tmp/py"], resolve=macos_resolve)
    profile = render_profile(paths)
    assert paths.write_paths == ("/private" + root,)
    assert allowed(profile, "file-write-create", "/private" + root + "/box/x")
    assert "/private/tmp/py" in paths.read_paths and "/tmp/py" not in paths.read_paths
    # The links themselves may be looked up (as /var, /tmp), never written or read below.
    assert {"/var", "/tmp", "/private/var", "/private/var/folders/zz/abc/T"} <= set(paths.lookup_paths)
    assert "/var/folders" not in paths.lookup_paths
    assert not allowed(profile, "file-write-data", "/private/tmp/x")
    assert not allowed(profile, "file-read-data", "/private/var/folders/zz/abc/T/other-app/secret")
    for rule in rules(profile):
        for f in filters_of(rule):
            if f[0] == "subpath":
                assert not f[1].startswith(("/tmp", "/var", "/etc")), f"unresolved subpath {f}"
    # A venv under the home: its own directory only, never the project around it.
    assert allowed(profile, "file-read-data", "/Users/u/proj/.venv/lib/python3.12/site-packages/x.py")
    assert not allowed(profile, "file-read-data", "/Users/u/proj/secrets.env")


def test_describe_profile_is_plain_data(tmp_path):
    _, paths, _, _, _, root = profile_of(tmp_path)
    info = seatbelt.describe_profile(paths)
    assert json.loads(json.dumps(info)) == info
    assert info["filesystem"]["default"] == "deny" and info["filesystem"]["write"] == [str(root)]
    assert info["network"].startswith("denied") and "within the sandbox" in info["processes"]
    assert seatbelt.describe_profile()["filesystem"]["write"] == ["the worker's own temp directory"]


def test_wrap_puts_the_worker_under_sandbox_exec(tmp_path):
    cmd = seatbelt.wrap([sys.executable, "-c", "pass"], str(tmp_path))
    assert cmd[:2] == [seatbelt.SANDBOX_EXEC, "-p"] and cmd[3:] == [sys.executable, "-c", "pass"]
    assert cmd[2] == seatbelt.profile_for(str(tmp_path))
    assert seatbelt.available() == (sys.platform == "darwin" and os.path.exists(seatbelt.SANDBOX_EXEC))


# -- the real thing (macOS) --------------------------------------------------------------------
needs_seatbelt = pytest.mark.skipif(not seatbelt.available(),
                                    reason="needs macOS with /usr/bin/sandbox-exec (the profile's rules are "
                                           "unit-tested above on every platform)")

HOSTILE = textwrap.dedent("""
    import json, os, socket, subprocess, sys
    home, tmp_name, port, sentinel, mode = sys.argv[1:6]
    out = {}

    def attempt(name, fn):
        try:
            out[name] = "done: " + repr(fn())[:80]
        except OSError as exc:
            out[name] = "denied: " + type(exc).__name__

    def append(path):
        with open(path, "a") as fh:
            return fh.write("echo pwned\\n")

    def fork_and_kill_child():  # signals inside the sandbox still work
        pid = os.fork()
        if pid == 0:
            os.pause()
            os._exit(0)
        os.kill(pid, 9)
        return os.waitpid(pid, 0)[1]

    attempt("read_ssh_key", lambda: open(os.path.join(home, ".ssh", "id_rsa")).read())
    if mode == "sandboxed":
        attempt("list_ssh_dir", lambda: os.listdir(os.path.join(home, ".ssh")))
        attempt("append_bashrc", lambda: append(os.path.join(home, ".bashrc")))
        attempt("write_tmp", lambda: append(tmp_name))
        attempt("write_box", lambda: append("inside.txt"))
        attempt("connect", lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=2).close())
        attempt("exec_shell", lambda: subprocess.run(["/bin/sh", "-c", "true"]).returncode)
        attempt("kill_outside", lambda: os.kill(int(sentinel), 9))
        attempt("fork_and_kill_child", fork_and_kill_child)
    print(json.dumps(out), flush=True)
    if out.get("kill_outside") == "denied: PermissionError":  # only then is kill(-1) safe to try
        try:
            os.kill(-1, 9)
        except OSError:
            pass
""")


@needs_seatbelt
def test_sandbox_exec_holds_a_hostile_candidate_in(tmp_path):
    home, _, _, _ = fake_layout(tmp_path)
    root = tempfile.mkdtemp(prefix="mlxsd-seatbelt-test-")
    box = os.path.join(root, "box")
    os.mkdir(box)
    tmp_name = f"/tmp/mlxsd-seatbelt-{uuid.uuid4().hex}"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    sentinel = subprocess.Popen(["sleep", "60"])
    bashrc_before = (home / ".bashrc").read_text()
    try:
        args = [str(home), tmp_name, str(listener.getsockname()[1]), str(sentinel.pid)]
        env = {"PATH": "/usr/bin:/bin", "HOME": box, "TMPDIR": box, "PYTHONDONTWRITEBYTECODE": "1"}
        # Control: the same script unsandboxed does read the key (so the test can fail).
        control = subprocess.run([sys.executable, "-s", "-B", "-c", HOSTILE] + args + ["control"], cwd=box,
                                 env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(control.stdout)["read_ssh_key"].startswith("done"), control.stderr
        run = subprocess.run(seatbelt.wrap([sys.executable, "-s", "-B", "-c", HOSTILE] + args + ["sandboxed"], root),
                             cwd=box, env=env, capture_output=True, text=True, timeout=60)
        assert run.stdout, f"the sandboxed script printed nothing (exit {run.returncode}): {run.stderr[-2000:]}"
        out = json.loads(run.stdout.splitlines()[0])
        for name in ("read_ssh_key", "list_ssh_dir", "append_bashrc", "write_tmp", "connect", "exec_shell",
                     "kill_outside"):
            assert out[name].startswith("denied"), (name, out[name])
        assert out["write_box"].startswith("done") and out["fork_and_kill_child"].startswith("done"), out
        # Checked from outside: nothing changed, nobody killed, no connection.
        assert (home / ".bashrc").read_text() == bashrc_before
        assert not os.path.exists(tmp_name)
        assert sentinel.poll() is None, "a process outside the sandbox was killed"
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        sentinel.kill()
        sentinel.wait()
        listener.close()
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        subprocess.run(["rm", "-rf", root])


@needs_seatbelt
def test_pool_workers_run_under_the_profile(tmp_path):
    from mlx_selfdistill.execution import SandboxPool
    from mlx_selfdistill.records import Problem

    home, _, _, _ = fake_layout(tmp_path)
    add = Problem(id="add", prompt="", entry_point="add", tests=[{"type": "call", "input": [1, 2], "output": 3}])
    steal = f"def add(a, b):\n    return open({str(home / '.ssh' / 'id_rsa')!r}).read()\n"
    sentinel = subprocess.Popen(["sleep", "60"])
    try:
        with SandboxPool(workers=1, timeout_s=5) as pool:
            assert pool.judge(add, "def add(a, b):\n    return a + b\n").status == "pass"
            v = pool.judge(add, steal)
            assert v.status != "pass" and "PRIVATE KEY" not in (v.detail or "")
            v = pool.judge(add, f"import os\nos.kill({sentinel.pid}, 9)\ndef add(a, b):\n    return a + b\n")
            assert v.status != "pass" and sentinel.poll() is None, "the candidate killed a process outside"
            assert pool.judge(add, "def add(a, b):\n    return a + b\n").status == "pass"
    finally:
        sentinel.kill()
        sentinel.wait()
