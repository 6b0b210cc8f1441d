"""The macOS isolation backend: a deny-by-default Seatbelt profile for a sandbox worker.

On macOS the pool starts each worker as `sandbox-exec -p PROFILE python worker.py`; the
kernel then holds the worker and every child it forks to this profile. Everything is denied
unless a rule below allows it:

- exec: only the interpreter (its path as called and its real path);
- read (and map as executable code): the interpreter's own directories (prefixes, stdlib,
  site-packages), this package's execution directory, and read-only system locations
  Python needs to start (system libraries and frameworks, the dyld cache, time zones);
- list: the directories on the way to those paths, one literal directory each (so the
  interpreter can resolve its own path), never what lies below them;
- write: only the worker's own temp directory, plus writing into /dev/null;
- processes: signals and process information only within the same sandbox (the worker and
  its children); no network rule at all, so every socket operation is denied;
- no hard links or clones (file-link, file-clone): Seatbelt judges a file by its path, so
  a link from the temp dir to a file outside would open that file under an allowed name.

Nothing under the user's home is readable unless it is one of the interpreter's own
directories (a venv or pyenv under ~ is allowed by exactly its subpath, not the home).
Seatbelt matches resolved paths, so every path is put through realpath (/tmp is
/private/tmp, /var is /private/var); the spelling as called is kept only as a directory
to traverse. Paths are written as SBPL string literals with `\\` and `"` escaped, so a
hostile directory name cannot end its string and add rules.

Learned from (not copied): OpenAI Codex CLI's and Anthropic's sandbox-runtime's macOS
profiles, and Chromium's.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

SANDBOX_EXEC = "/usr/bin/sandbox-exec"  # absolute: a PATH entry cannot substitute another
EXECUTION_DIR = os.path.dirname(os.path.abspath(__file__))

# Read-only system locations Python needs on macOS. /System as a whole is not listed:
# /System/Volumes/Data is the data volume, home directories included.
SYSTEM_READ = (
    "/usr/lib",                           # system dylibs (most live in the dyld cache)
    "/usr/share",                         # zoneinfo, locale and ICU data
    "/System/Library",                    # frameworks, SystemVersion.plist, the dyld cache (macOS 11-12)
    "/System/Cryptexes",                  # the dyld cache on macOS 13+ (a link to the one below)
    "/System/Volumes/Preboot/Cryptexes",
    "/private/var/db/dyld",               # the dyld cache on older macOS
    "/private/var/db/timezone",           # what /etc/localtime points to
    "/private/etc/localtime",             # the link /etc/localtime (its target is above)
    # Package managers' installed libraries, which Homebrew and pyenv builds link against
    # (openssl for hashlib and ssl, sqlite, xz): installed software, not user data.
    "/opt/homebrew/Cellar", "/opt/homebrew/opt", "/usr/local/Cellar", "/usr/local/opt", "/opt/local/lib",
)
DEVICE_NULL = "/dev/null"  # the child's stdin, stdout and stderr
DEVICES = (DEVICE_NULL, "/dev/random", "/dev/urandom")  # read; only /dev/null is written

# sysctl names Python and libSystem read (CPU count, page size, OS version, uname, load
# average). Not the kern.proc / kern.procargs families, which describe other processes.
SYSCTL_PREFIXES = ("hw.", "machdep.cpu.", "kern.os")
SYSCTL_NAMES = ("kern.version", "kern.hostname", "kern.argmax", "kern.maxfilesperproc", "kern.maxproc",
                "kern.ngroups", "kern.secure_kernel", "kern.usrstack64", "sysctl.proc_cputype",
                "sysctl.proc_translated", "vm.loadavg")


@dataclass(frozen=True)
class SeatbeltPaths:
    """What one worker's profile allows, as absolute resolved paths."""
    exec_paths: tuple[str, ...]    # executables it may exec (literal)
    read_paths: tuple[str, ...]    # trees it may read and map as code (subpath)
    write_paths: tuple[str, ...]   # trees it may read and write (subpath)
    lookup_paths: tuple[str, ...] = ()  # single directories or links on the way to the above (literal)


def available() -> bool:
    return sys.platform == "darwin" and os.path.exists(SANDBOX_EXEC)


def interpreter_dirs() -> list[str]:
    """The directories the current interpreter runs and imports from (as it spells them)."""
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, EXECUTION_DIR]
    paths = sysconfig.get_paths()
    dirs += [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)]
    try:
        dirs += site.getsitepackages()
    except AttributeError:  # an old virtualenv's site.py
        pass
    framework = sysconfig.get_config_var("PYTHONFRAMEWORKPREFIX") or ""
    if sysconfig.get_config_var("PYTHONFRAMEWORK") and framework:
        dirs.append(os.path.join(framework, sysconfig.get_config_var("PYTHONFRAMEWORKDIR") or "Python.framework"))
    return dirs


def interpreter_executables() -> list[str]:
    exes = [sys.executable]
    if sysconfig.get_config_var("PYTHONFRAMEWORK"):  # a framework build re-executes its app bundle
        exes.append(os.path.join(sys.base_prefix, "Resources", "Python.app", "Contents", "MacOS", "Python"))
    return exes


def seatbelt_paths(write_root: Optional[str], *, home: Optional[str] = None,
                   executables: Optional[Iterable[str]] = None, python_dirs: Optional[Iterable[str]] = None,
                   resolve: Callable[[str], str] = os.path.realpath) -> SeatbeltPaths:
    """The paths a worker needs: the current interpreter's (or those given) and `write_root`
    (its temp directory; None for a description without one). `home` is kept closed (by
    default $HOME and the password database's home). `resolve` is realpath; tests pass their
    own to play macOS's /tmp -> /private/tmp on any system."""
    homes = [home] if home else _homes()
    homes = [resolve(os.path.abspath(h)) for h in homes]
    called = [os.path.abspath(p) for p in (executables if executables is not None else interpreter_executables())
              if p]  # sys.executable is empty when Python cannot tell
    dirs = [os.path.abspath(p) for p in (python_dirs if python_dirs is not None else interpreter_dirs()) if p]
    # An interpreter directory that is the home, or above it, would open the whole home.
    reads = [r for r in (resolve(p) for p in dirs + called) if not any(_within(h, r) for h in homes)]
    reads = _outermost(reads + [resolve(p) for p in SYSTEM_READ])
    writes = _outermost([resolve(os.path.abspath(write_root))] if write_root else [])
    # Each directory and link on the way to those paths, as the kernel names it (the link
    # /tmp stays /tmp, what lies behind it is /private/tmp/...), unless already covered.
    spelled = dirs + called + list(SYSTEM_READ) + list(DEVICES)
    spelled += [os.path.abspath(write_root)] if write_root else []
    seen = [_as_seen(q, resolve) for p in spelled + reads + writes for q in _ancestors(p)]
    seen += [_as_seen(p, resolve) for p in spelled if _as_seen(p, resolve) != resolve(p)]  # links themselves
    lookups = [q for q in _unique(seen) if not any(_within(q, top) for top in reads + writes)]
    return SeatbeltPaths(exec_paths=tuple(_unique(s for p in called for s in (p, resolve(p)))),
                         read_paths=tuple(sorted(reads)), write_paths=tuple(writes),
                         lookup_paths=tuple(sorted(lookups)))


def render_profile(paths: SeatbeltPaths) -> str:
    """The SBPL profile text, one rule per line."""
    def filters(kind: str, items: Iterable[str]) -> str:
        items = list(items)
        if not items:  # an allow without a filter would allow everything
            raise ValueError(f"a Seatbelt rule needs at least one path ({kind})")
        return " ".join(f"({kind} {sbpl_string(p)})" for p in items)

    rules = [
        "(version 1)",
        "(deny default)",
        "(allow process-fork)",
        f"(allow process-exec {filters('literal', paths.exec_paths)})",
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
        "(allow sysctl-read " + " ".join(
            [f"(sysctl-name-prefix {sbpl_string(p)})" for p in SYSCTL_PREFIXES]
            + [f"(sysctl-name {sbpl_string(n)})" for n in SYSCTL_NAMES]) + ")",
        f"(allow file-read* file-map-executable {filters('subpath', paths.read_paths)})",
    ]
    if paths.lookup_paths:
        rules.append(f"(allow file-read* {filters('literal', paths.lookup_paths)})")
    rules.append(f"(allow file-read* {filters('literal', DEVICES)})")
    rules.append(f"(allow file-write-data {filters('literal', [DEVICE_NULL])})")
    if paths.write_paths:
        rules.append(f"(allow file-read* file-write* {filters('subpath', paths.write_paths)})")
    return "\n".join(rules) + "\n"


def profile_for(write_root: str) -> str:
    """The profile for a worker of the current interpreter writing only in `write_root`."""
    return render_profile(seatbelt_paths(write_root))


def wrap(cmd: list[str], write_root: str) -> list[str]:
    """`cmd` run under the profile for `write_root`."""
    return [SANDBOX_EXEC, "-p", profile_for(write_root)] + list(cmd)


def describe_profile(paths: Optional[SeatbeltPaths] = None) -> dict:
    """What the profile enforces, as plain data for the protections report."""
    paths = paths or seatbelt_paths(None)
    return {
        "mechanism": "seatbelt (sandbox-exec, deny by default)",
        "filesystem": {
            "default": "deny",
            "read": list(paths.read_paths),
            "write": list(paths.write_paths) or ["the worker's own temp directory"],
            "devices": {"read": list(DEVICES), "write": [DEVICE_NULL]},
            "listable_directories": len(paths.lookup_paths),
            "home": "unreadable, except the interpreter's own directories in it",
            "links": "hard links and clones denied",
        },
        "exec": list(paths.exec_paths),
        "network": "denied (no network rule)",
        "processes": "signals and process information only within the sandbox (the worker and its children)",
        "sysctl": "read only: " + ", ".join([p + "*" for p in SYSCTL_PREFIXES] + list(SYSCTL_NAMES)),
    }


def protections() -> dict:
    """The areas of the protections report (protections.py) this profile holds; the worker
    adds disk, which it watches itself."""
    from .protections import entry

    return {"filesystem": entry(True, "Seatbelt, deny by default: writes only in the worker's temp dir, reads only "
                                      "the interpreter's directories and system libraries"),
            "network": entry(True, "Seatbelt: no network rule"),
            "processes": entry(True, "Seatbelt: signals and process information only within the sandbox"),
            "uid": entry(False, "same as the pool")}


def sbpl_string(text: str) -> str:
    """`text` as an SBPL (Scheme) string literal: backslash and quote escaped, line breaks
    and tabs written as escapes so a rule stays on one line."""
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _homes() -> list[str]:
    """The user's home as $HOME says and as the password database says (they can differ)."""
    homes = [os.path.expanduser("~")]
    try:
        import pwd

        homes.append(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):
        pass
    return [h for h in homes if h and os.path.isabs(h)]


def _within(path: str, top: str) -> bool:
    """path is top or lies below it."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def _as_seen(path: str, resolve: Callable[[str], str]) -> str:
    """path with its directories resolved but its last component kept: a link is checked
    under this name when it is read (readlink, lstat)."""
    parent = os.path.dirname(path)
    return path if parent == path else os.path.join(resolve(parent), os.path.basename(path))


def _ancestors(path: str) -> list[str]:
    """Every directory above path, from / down."""
    out, current = [], os.path.dirname(path)
    while True:
        out.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            return out[::-1]
        current = parent


def _outermost(paths: Iterable[str]) -> list[str]:
    """The paths not already inside another one of them."""
    kept: list[str] = []
    for p in sorted(set(paths), key=lambda s: (s.count("/"), s)):
        if not any(_within(p, k) for k in kept):
            kept.append(p)
    return kept


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
