"""OS-level protections for the sandbox, via ctypes (stdlib only: the worker imports this
file directly). Each function degrades gracefully and says what it managed, so the pool
can record which protections are really active on this machine.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
import sys

LINUX = sys.platform.startswith("linux")
MACOS = sys.platform == "darwin"

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18

# Candidate processes of a root-run pool run as this uid + (worker pid % 1e6): an unused uid
# per worker, so RLIMIT_NPROC binds, and the candidate cannot signal or read (/proc/*/environ)
# any process of the user who started the pool.
SANDBOX_UID_BASE = 1_900_000_000

_libc = None
_untyped_prctl = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # the running process already has libc loaded
        if LINUX:
            _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def prctl(option: int, arg2: int = 0, arg3=0, arg4: int = 0, arg5: int = 0) -> bool:
    if not LINUX:
        return False
    return libc().prctl(option, arg2, arg3, arg4, arg5) == 0


def set_subreaper() -> bool:
    """Orphaned descendants (e.g. a `setsid` grandchild whose parent died) reparent to us."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int = 9) -> bool:
    """Receive `sig` when the parent dies. Every forked child calls this, so it skips ctypes'
    argument converters (argtypes): the typed call costs the child ~25 more page faults.
    libffi widens the int arguments to full registers all the same."""
    global _untyped_prctl
    if not LINUX:
        return False
    if _untyped_prctl is None:
        _untyped_prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _untyped_prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def isolate_network() -> str:
    """Cut this process (and every later child) off the network. Returns the method used:
    'netns' (an empty network namespace), 'seccomp' (inet sockets refused) or 'none'."""
    if LINUX:
        if os.geteuid() == 0 and libc().unshare(CLONE_NEWNET) == 0:
            return "netns"
        uid, gid = os.geteuid(), os.getegid()
        if libc().unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            try:  # keep our own uid/gid inside the new user namespace
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"{uid} {uid} 1")
                _write("/proc/self/gid_map", f"{gid} {gid} 1")
            except OSError:
                pass
            return "userns+netns"
        if install_seccomp_no_inet():
            return "seccomp"
    return "none"


def _seccomp_arch():
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return 0xC000003E, 41, 0x40000000 + 41  # AUDIT_ARCH_X86_64, socket, x32 socket
    if machine in ("aarch64", "arm64"):
        return 0xC00000B7, 198, 198
    return None


def install_seccomp_no_inet() -> bool:
    """A seccomp filter: socket(AF_INET/AF_INET6, ...) and io_uring_setup fail with EACCES.
    Unix sockets stay allowed (multiprocessing needs socketpair)."""
    arch = _seccomp_arch()
    if not LINUX or arch is None:
        return False
    audit_arch, nr_socket, nr_socket_x32 = arch
    ld, jeq, ret = 0x20, 0x15, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EACCES
    prog = [
        (ld, 0, 0, 4),                # A = seccomp_data.arch
        (jeq, 0, 7, audit_arch),      # other ABI: allow (-> 9)
        (ld, 0, 0, 0),                # A = seccomp_data.nr
        (jeq, 6, 0, 425),             # io_uring_setup -> deny
        (jeq, 1, 0, nr_socket),       # socket -> check the family
        (jeq, 0, 3, nr_socket_x32),
        (ld, 0, 0, 16),               # A = low 32 bits of args[0] (the family)
        (jeq, 2, 0, 2),               # AF_INET -> deny
        (jeq, 1, 0, 10),              # AF_INET6 -> deny
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
    ]
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    if not prctl(PR_SET_NO_NEW_PRIVS, 1):
        return False
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def _blocked_ancestor(path: str):
    """(dir, child) where other users cannot traverse dir on the way to path, else None."""
    parts = os.path.realpath(path).strip("/").split("/")
    current = "/"
    for name in parts:
        try:
            if not os.stat(current).st_mode & 0o001:
                return current, name
        except OSError:
            return None
        current = os.path.join(current, name)
    return None


def expose_paths(paths) -> bool:
    """Make `paths` reachable for the sandbox uid in a private mount namespace: each directory
    others cannot traverse (say a 0700 /root holding pyenv's Python) is covered by an empty
    tmpfs into which only the needed child directory is bind-mounted back. The rest of that
    directory (tokens, caches) becomes invisible to candidates. Root on Linux only."""
    if not LINUX or os.geteuid() != 0:
        return False
    blocked: dict[str, set] = {}
    for p in paths:
        hit = _blocked_ancestor(p)
        if hit:
            blocked.setdefault(hit[0], set()).add(hit[1])
    if not blocked:
        return True
    mount = libc().mount
    mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if libc().unshare(CLONE_NEWNS) != 0 or mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    for top, kids in sorted(blocked.items(), key=lambda kv: -len(kv[0])):
        fds = {k: os.open(os.path.join(top, k), os.O_PATH | os.O_DIRECTORY) for k in kids
               if os.path.isdir(os.path.join(top, k))}
        try:
            if mount(b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755,size=1m") != 0:
                return False
            for k, fd in fds.items():
                target = os.path.join(top, k)
                os.mkdir(target, 0o755)
                if mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS_BIND | MS_REC, None) != 0:
                    return False
        finally:
            for fd in fds.values():
                os.close(fd)
    return True


def sandbox_uid() -> int | None:
    """The uid candidates run as, or None when they keep ours (not root, or not Linux)."""
    if LINUX and os.geteuid() == 0:
        return SANDBOX_UID_BASE + os.getpid() % 1_000_000
    return None


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def count_user_processes(uid: int) -> int:
    """Tasks (processes and threads) owned by uid: RLIMIT_NPROC counts them all."""
    n = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    with open(f"/proc/{name}/stat", "rb") as fh:
                        n += int(fh.read().rsplit(b")", 1)[1].split()[17])
            except (OSError, ValueError, IndexError):
                pass
    return n


def limit_plan(*, core: int | None = None, cpu_s: int | None = None, memory_mb: int | None = None,
               file_bytes: int | None = None, nofile: int | None = None,
               nproc: int | None = None) -> list[tuple[int, int]]:
    """(resource, value) pairs for the limits given (None: left as inherited), each capped at
    our hard limit. Worked out in the worker, so a forked child only makes the setrlimit calls."""
    wanted = [(resource.RLIMIT_CORE, core), (resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_FSIZE, file_bytes),
              (resource.RLIMIT_NOFILE, nofile)]
    if LINUX:  # macOS ignores RLIMIT_AS: the worker watches RSS there instead
        wanted.append((resource.RLIMIT_AS, memory_mb * 1024 * 1024 if memory_mb else None))
    if hasattr(resource, "RLIMIT_NPROC"):
        wanted.append((resource.RLIMIT_NPROC, nproc))
    plan = []
    for which, value in wanted:
        if value is None:
            continue
        try:
            hard = resource.getrlimit(which)[1]
        except (ValueError, OSError):
            continue
        plan.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return plan


def apply_limits(plan: list) -> None:
    """Set each limit, soft = hard, so the candidate cannot raise it again."""
    for which, value in plan:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def children_of(pid: int) -> list[int]:
    """Direct children of pid (Linux /proc)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            pass
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of one process, read from outside (the macOS memory guard)."""
    if LINUX:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0
    if MACOS:
        return _darwin_rss(pid)
    return 0


def _darwin_rss(pid: int) -> int:
    # proc_pid_rusage(pid, RUSAGE_INFO_V2, &info): phys_footprint is what Activity Monitor shows.
    class RusageInfoV2(ctypes.Structure):
        _fields_ = [("uuid", ctypes.c_uint8 * 16)] + [(n, ctypes.c_uint64) for n in (
            "user_time", "system_time", "pkg_idle_wkups", "interrupt_wkups", "pageins", "wired_size",
            "resident_size", "phys_footprint", "proc_start_abstime", "proc_exit_abstime",
            "child_user_time", "child_system_time", "child_pkg_idle_wkups", "child_interrupt_wkups",
            "child_pageins", "child_elapsed_abstime", "diskio_bytesread", "diskio_byteswritten")]

    try:
        lib = ctypes.CDLL("/usr/lib/libproc.dylib")
        info = RusageInfoV2()
        if lib.proc_pid_rusage(pid, 2, ctypes.byref(info)) != 0:
            return 0
        return int(max(info.phys_footprint, info.resident_size))
    except (OSError, AttributeError):
        return 0
