"""Landlock (Linux >= 5.13): the filesystem allow-list, TCP deny and signal/socket scoping.

Landlock is an unprivileged LSM: any process may restrict itself, and its children inherit
the restriction. The worker builds one ruleset (an fd) naming what a candidate may touch:
read (and execute) the interpreter, its stdlib and site-packages, and the system libraries;
read and write its own box and a few devices (/dev/null, /dev/zero, /dev/urandom). Each
forked child then enters a fresh domain with one landlock_restrict_self call. Beyond the
filesystem, a Landlock domain also stops ptrace and /proc/<pid>/environ of any process
outside it (every ABI), TCP bind/connect (ABI 4) and, from ABI 6, signals and abstract unix
sockets aimed outside it: the pool, the worker and the user's other processes.

Stdlib only (ctypes): the worker imports this file directly.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import stat
import struct
import sys

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

# Filesystem rights, and the ABI that introduced each.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2  # ABI 6

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # what a rule on a non-directory may hold
READ = READ_FILE | READ_DIR | EXECUTE
WRITE = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER
         | TRUNCATE)
DEVICE = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV

# System paths a Python process reads: shared libraries, the loader cache, time zones, locales.
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/ld.so.cache", "/etc/localtime",
               "/etc/ld.so.conf", "/etc/ld.so.conf.d")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")

_syscall = None


def _libc_syscall():
    global _syscall
    if _syscall is None:
        _syscall = ctypes.CDLL(None, use_errno=True).syscall
    return _syscall


def abi() -> int:
    """The Landlock ABI version this kernel offers, 0 when none (old kernel, LSM disabled, not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc_syscall()(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)
    return max(0, int(version))


def interpreter_paths() -> list[str]:
    """The directories this interpreter imports from: its prefixes and the sys.path entries
    inside them (stdlib, lib-dynload, site-packages). sys.path entries elsewhere (the
    script's own folder, an editable install's project, PYTHONPATH) are left out: they can
    hold anything, e.g. a project's .env."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths = set(prefixes)
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and any(real == p or real.startswith(p + os.sep) for p in prefixes):
            paths.add(real)
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(paths)


def read_paths() -> tuple:
    return SYSTEM_READ + tuple(interpreter_paths())


class Ruleset:
    """One prepared ruleset: the worker builds it once, each child calls enter()."""

    def __init__(self, version: int, box: str, read_paths):
        self.version, self.read_paths = version, tuple(read_paths)
        self.fd = -1
        fs = FS_BY_ABI[max(v for v in FS_BY_ABI if v <= version)]
        net = NET_BIND_TCP | NET_CONNECT_TCP if version >= 4 else 0
        scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if version >= 6 else 0
        size = 24 if version >= 6 else 16 if version >= 4 else 8
        attr = ctypes.create_string_buffer(struct.pack("QQQ", fs, net, scoped)[:size], size)
        call = self._syscall = _libc_syscall()
        fd = call(SYS_CREATE_RULESET, attr, ctypes.c_size_t(size), 0)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
        # Above the descriptors a child rearranges (0-3: stdio and its report) before entering.
        self.fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        self.handled = {"fs": fs, "net": net, "scoped": scoped}
        self.rules: list[str] = []
        for path in read_paths:
            self.allow(path, READ & fs)
        for path in DEVICES:
            self.allow(path, DEVICE & fs)
        self.allow(box, (READ_FILE | READ_DIR | WRITE) & fs)  # no EXECUTE: nothing it writes runs

    def allow(self, path: str, access: int) -> bool:
        """Add a rule for `path` and what lies beneath; a path that does not exist is skipped."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                access &= FILE_RIGHTS
            rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
            ok = _libc_syscall()(SYS_ADD_RULE, self.fd, RULE_PATH_BENEATH, rule, 0) == 0
        finally:
            os.close(fd)
        if ok:
            self.rules.append(path)
        return ok

    def enter(self) -> bool:
        """Restrict the calling process (a freshly forked child) to this ruleset. Needs
        no_new_privs (set once in the worker, inherited) or CAP_SYS_ADMIN."""
        return self._syscall(SYS_RESTRICT_SELF, self.fd, 0) == 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def describe(self) -> dict:
        """What holds, for the protections report."""
        return {"abi": self.version, "tcp": bool(self.handled["net"]),
                "signals": bool(self.handled["scoped"] & SCOPE_SIGNAL),
                "abstract_unix_sockets": bool(self.handled["scoped"] & SCOPE_ABSTRACT_UNIX_SOCKET)}
