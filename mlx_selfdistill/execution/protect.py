"""OS-level protections for the sandbox, via ctypes (stdlib only: the worker imports this
file directly): prctl flags, the seccomp filters, the uid switch, resource limits, process
inspection. Each function degrades gracefully and says what it managed, so the pool can
record which protections are really active on this machine. Landlock and namespaces have
modules of their own.
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
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

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


# Per architecture: AUDIT_ARCH, the socket syscall, the path-based metadata syscalls
# (chmod/chown/utimes/xattr families: Landlock does not cover them), io_uring_setup.
_SECCOMP = {
    "x86_64": (0xC000003E, 41, (90, 92, 94, 132, 188, 189, 197, 198, 235, 260, 261, 268, 280, 452, 463, 466)),
    "aarch64": (0xC00000B7, 198, (5, 6, 14, 15, 53, 54, 88, 452, 463, 466)),
}
_SECCOMP["amd64"], _SECCOMP["arm64"] = _SECCOMP["x86_64"], _SECCOMP["aarch64"]
IO_URING_SETUP = 425
X32_BIT = 0x40000000


class SeccompFilter:
    """A classic-BPF seccomp program, assembled once (in the worker), installed with one
    prctl (in each child when it is per candidate). Denied calls fail with EPERM/EACCES."""

    def __init__(self, *, deny_inet: bool = False, deny_unix: bool = False, deny_metadata: bool = False):
        arch = _SECCOMP.get(platform.machine().lower())
        self.buf = self.fprog = None
        if not LINUX or arch is None or not (deny_inet or deny_unix or deny_metadata):
            return
        audit_arch, nr_socket, metadata = arch
        ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
        allow, eperm, eacces = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.EACCES
        # (code, jump-true label, jump-false label, k); labels resolve to relative offsets.
        prog = [(ld, None, None, 4), (jeq, None, "allow", audit_arch), (ld, None, None, 0)]
        if audit_arch == 0xC000003E:
            prog.append((jge, "deny", None, X32_BIT))  # x32 calls: another table, never used by Python
        if deny_metadata:
            prog += [(jeq, "eperm", None, nr) for nr in metadata]
        if deny_inet or deny_unix:
            # socket() of a denied family; socketpair() stays (multiprocessing.Pipe uses it).
            families = ((2, 10) if deny_inet else ()) + ((1,) if deny_unix else ())  # AF_INET, AF_INET6, AF_UNIX
            prog += [(jeq, "deny", None, IO_URING_SETUP), (jeq, "family", "allow", nr_socket),
                     ("family", ld, None, None, 16)]  # A = low 32 bits of args[0] (the address family)
            prog += [(jeq, "deny", None, f) for f in families]
        prog += [("allow", ret, None, None, allow), ("deny", ret, None, None, eacces),
                 ("eperm", ret, None, None, eperm)]
        labels, plain = {}, []
        for ins in prog:
            if isinstance(ins[0], str):
                labels[ins[0]] = len(plain)
                ins = ins[1:]
            plain.append(ins)
        raw = b""
        for i, (code, jt, jf, k) in enumerate(plain):
            rel = (lambda lab: 0 if lab is None else labels[lab] - i - 1)
            raw += struct.pack("HBBI", code, rel(jt), rel(jf), k)

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self.buf = ctypes.create_string_buffer(raw, len(raw))
        self.fprog = SockFprog(len(plain), ctypes.cast(self.buf, ctypes.c_void_p))
        # Everything the install call needs, built here: in a forked child each ctypes object
        # made costs page faults (building the pointer there cost ~95 more per child).
        self._arg = ctypes.c_void_p(ctypes.addressof(self.fprog))
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def install(self) -> bool:
        """Filter this process and its later children. Needs no_new_privs (set here) or
        CAP_SYS_ADMIN."""
        return self.fprog is not None and no_new_privs() and self.enter()

    def enter(self) -> bool:
        """install() for a child forked from a process that already set no_new_privs: one call."""
        return self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._arg, 0, 0) == 0


def install_seccomp_sockets(*, inet: bool) -> bool:
    """socket(AF_UNIX, ...) fails with EACCES, and with `inet` socket(AF_INET/AF_INET6) and
    io_uring_setup too. A named unix socket (the user's D-Bus session, ssh-agent, docker)
    reaches past every namespace and Landlock ABI up to 7 does not cover connecting to one;
    socketpair() stays (multiprocessing needs it)."""
    return SeccompFilter(deny_inet=inet, deny_unix=True).install()


def no_new_privs() -> bool:
    """Later execve cannot gain privileges (setuid bits, file capabilities): Landlock and
    seccomp filters need it from unprivileged processes."""
    return prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_dumpable(on: bool) -> bool:
    """A non-dumpable process cannot be ptraced, nor its /proc/<pid>/environ read, by a
    process of the same uid without CAP_SYS_PTRACE."""
    return prctl(PR_SET_DUMPABLE, int(on))


def blocked_ancestors(paths) -> dict:
    """{directory: {child names}}: directories other users cannot traverse on the way to paths."""
    blocked: dict = {}
    for p in paths:
        parts = os.path.realpath(p).strip("/").split("/")
        current = "/"
        for name in parts:
            try:
                if not os.stat(current).st_mode & 0o001:
                    blocked.setdefault(current, set()).add(name)
                    break
            except OSError:
                break
            current = os.path.join(current, name)
    return blocked


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
