"""Linux namespaces for a sandbox worker: its own mount, network and PID namespace (inside an
unprivileged user namespace when the pool does not run as root).

What they give the worker's candidates:
- network: an empty network namespace (no interface but a downed loopback);
- processes: a PID namespace whose init is the worker, so a candidate sees and can signal
  only its own worker's processes, `kill(-1, 9)` included, and the worker's sweep after each
  job is a single `kill(-1, SIGKILL)`; a fresh /proc shows only that namespace;
- disk: the box (the candidate's cwd, HOME and TMPDIR) is a tmpfs capped in bytes and
  files, and /tmp, /var/tmp and /dev/shm are private tmpfs mounts, so nothing reaches the
  host's shared temporary directories and nothing outlives the worker.

The kernel may refuse parts (no unprivileged user namespaces, a container's masked /proc):
`probe` tries the combinations in a throwaway child first, so the worker only enters what
works and reports what it got. Stdlib only (ctypes): the worker imports this file directly.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
PRIVATE_TMP_OPTIONS = "size=1m,nr_inodes=64"
LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return _libc


def mount(source, target: str, fstype, flags: int, data=None) -> bool:
    enc = (lambda s: s.encode() if isinstance(s, str) else s)
    return libc().mount(enc(source), enc(target), enc(fstype), flags, enc(data)) == 0


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _unshare(flags: int) -> bool:
    """unshare(flags); in a new user namespace, keep our own uid and gid (not root inside)."""
    uid, gid = os.geteuid(), os.getegid()
    if libc().unshare(flags) != 0:
        return False
    if flags & CLONE_NEWUSER:
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError:
            return False
    return True


def _choices(root: bool) -> list[int]:
    base = 0 if root else CLONE_NEWUSER
    return [base | f for f in (CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID, CLONE_NEWNS | CLONE_NEWNET, CLONE_NEWNET)]


def probe(probe_dir: str) -> int:
    """The namespace flags this process can really use (0: none), tried in a throwaway child:
    unshare, then (with a mount namespace) a tmpfs mount on probe_dir, which must exist."""
    if not sys.platform.startswith("linux"):
        return 0
    for flags in _choices(os.geteuid() == 0):
        pid = os.fork()
        if pid == 0:
            ok = _unshare(flags)
            if ok and flags & CLONE_NEWNS:
                ok = (mount(None, "/", None, MS_REC | MS_PRIVATE)
                      and mount("tmpfs", probe_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=16"))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return flags
    return 0


def enter(flags: int) -> bool:
    """Enter the namespaces `flags` names. With a PID namespace this process forks its init:
    the init returns (and becomes the worker); this process waits for it and exits with its
    status, never returning. Returns whether the unshare worked."""
    if not flags or not _unshare(flags):
        return False
    if flags & CLONE_NEWPID:
        _fork_init()
    return True


def _fork_init() -> None:
    pid = os.fork()
    if pid == 0:
        # The pool's pipes are ours now; die with the waiting parent (it dies with the pool).
        libc().prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        # Only handled signals reach a namespace's init from inside it: leave none handled,
        # so a candidate's SIGINT cannot raise KeyboardInterrupt here.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        return
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status) else 1)


def private_mounts(box: str, *, box_options: str, owner_uid=None, proc: bool = False) -> dict:
    """In a fresh mount namespace: mounts propagate nowhere, /tmp, /var/tmp and /dev/shm become
    private small tmpfs mounts, the box a tmpfs capped in bytes and files, and (in a PID
    namespace) /proc shows only this namespace. The box's parent folders are recreated under
    the private /tmp when the pool's root lay there. Returns what worked."""
    done = {"private_tmp": [], "box_tmpfs": False, "proc": False}
    if not mount(None, "/", None, MS_REC | MS_PRIVATE):
        return done
    if proc:
        done["proc"] = mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in PRIVATE_TMP:
        # Root owns these: the sandbox uid of a root pool cannot write them at all; a user
        # pool's candidate could, but Landlock keeps it to its box.
        if os.path.isdir(path) and not os.path.islink(path) and mount(
                "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"{PRIVATE_TMP_OPTIONS},mode=0711"):
            done["private_tmp"].append(path)
    wdir = os.path.dirname(box)
    if not os.path.isdir(box):  # hidden by the private /tmp: rebuild the path to it
        os.makedirs(wdir, 0o711, exist_ok=True)
        os.mkdir(box, 0o700)
    options = box_options + ",mode=0700" + (f",uid={owner_uid},gid={owner_uid}" if owner_uid is not None else "")
    done["box_tmpfs"] = mount("tmpfs", box, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
    os.chdir(wdir)
    return done


def expose_blocked(blocked: dict) -> bool:
    """Cover each directory others cannot traverse (say a 0700 /root holding pyenv's Python)
    with an empty tmpfs into which only the needed child directories are bind-mounted back,
    so the sandbox uid reaches the interpreter and nothing else there. In a private mount
    namespace, as root. `blocked`: {directory: {child names}}."""
    for top, kids in sorted(blocked.items(), key=lambda kv: -len(kv[0])):
        fds = {k: os.open(os.path.join(top, k), os.O_PATH | os.O_DIRECTORY) for k in kids
               if os.path.isdir(os.path.join(top, k))}
        try:
            if not mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m"):
                return False
            for k, fd in fds.items():
                target = os.path.join(top, k)
                os.mkdir(target, 0o755)
                if not mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC):
                    return False
        finally:
            for fd in fds.values():
                os.close(fd)
    return True


def drop_capabilities() -> bool:
    """Give up every capability (those a user namespace grants its creator): the worker
    needs none once its mounts are made, and its children must not inherit them."""
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    return libc().capset(header, data) == 0
