"""A sandbox worker: a small single-threaded process that forks one child per candidate.

Started by SandboxPool with a scrubbed environment as `python -s -B worker.py`. It imports
what candidates commonly need once (so each fork starts warm), cuts itself off the network,
becomes a subreaper, then loops: read a job line on stdin, fork the child (child.py), wait
for its report with a wall-clock deadline, kill its whole process group and every
descendant left behind, empty the box directory, and write one reply line on stdout.

The reply carries the child's raw report text (capped); the pool decodes and grades it.
Stdlib only: this file runs outside the package.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import stat
import sys
import time
from json.encoder import encode_basestring_ascii as quote  # C: no Python frames

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import child  # noqa: E402
import protect  # noqa: E402

sys.path.pop(0)

REPORT_OVERHEAD = 64 * 1024
NPROC_REFRESH = 50  # jobs between recounts of our uid's processes (non-root RLIMIT_NPROC)
CHILD_NOFILE = 128
PRECOMPILE_MAX_CHARS = 100_000
HAVE_PIDFD = hasattr(os, "pidfd_open")


class Worker:
    def __init__(self, config: dict):
        self.box = config["box"]
        self.wdir = os.path.dirname(self.box)
        self.extra_nproc = int(config.get("nproc", 64))
        self.protections = {"platform": sys.platform}
        self.protections["die_with_pool"] = protect.die_with_parent(signal.SIGKILL)
        self.protections["subreaper"] = protect.set_subreaper()
        network = config.get("network", "auto")
        if network == "auto":
            self.protections["network"] = protect.isolate_network()
        elif network == "seccomp":
            self.protections["network"] = "seccomp" if protect.install_seccomp_no_inet() else "none"
        else:
            self.protections["network"] = "none"
        self.uid = protect.sandbox_uid() if self.protections["network"] != "userns+netns" else None
        self.protections["uid"] = self.uid if self.uid is not None else "same as the pool"
        self.import_assist = False
        if self.uid is not None and not self.uid_can_read_python():
            # e.g. pyenv under a 0700 /root: expose just Python's directories to the sandbox uid.
            exposed = protect.expose_paths([sys.base_prefix, sys.prefix, os.path.dirname(os.__file__)]
                                           + [p for p in sys.path if p])
            self.import_assist = not (exposed and self.uid_can_read_python())
            self.protections["python_paths"] = "bind-mounted for the sandbox uid" if not self.import_assist else \
                "unreadable to the sandbox uid: named imports load before the uid drop"
        guard = config.get("memory_guard", "auto")
        if guard == "auto":
            guard = "rlimit" if protect.LINUX else "rss"
        self.rlimit_memory = guard in ("rlimit", "both")
        self.rss_watch = guard in ("rss", "both")
        self.protections["memory"] = guard
        self.jobs = 0
        self.nproc = None
        self._limits_key, self._limits = None, []
        self.reset_box(force=True)
        # Limits every child of this pool gets, set once on this worker (soft = hard, which
        # the children inherit) instead of in each child: each setrlimit in a forked child
        # costs it page faults. None of them hinders the worker: it writes no files, keeps a
        # few descriptors, and is far smaller than any memory limit the pool allows. Jobs
        # asking for other values still get them set in their child. (Not RLIMIT_NPROC: it
        # would count against the worker's own forks, e.g. as a user namespace's root.)
        self.fixed = {"memory_mb": config.get("memory_mb") if self.rlimit_memory else None,
                      "output_bytes": config.get("output_bytes")}
        protect.apply_limits(protect.limit_plan(core=0, nofile=CHILD_NOFILE, memory_mb=self.fixed["memory_mb"],
                                                file_bytes=self.fixed["output_bytes"]))
        for name in config.get("preimport", []):
            try:
                __import__(name)
            except Exception:
                pass
        gc.collect()
        gc.freeze()  # forked children then touch fewer of the parent's pages

    # -- the box (the child's cwd) ------------------------------------------------------
    def reset_box(self, force: bool = False) -> None:
        if not force:
            try:
                st = os.lstat(self.box)
                if (stat.S_ISDIR(st.st_mode) and (self.uid is None or st.st_uid == self.uid)
                        and stat.S_IMODE(st.st_mode) == 0o700 and not os.listdir(self.box)):
                    return
            except OSError:
                pass
        os.chmod(self.wdir, 0o700)
        try:
            remove_tree(self.box)
            os.mkdir(self.box, 0o700)
            if self.uid is not None:
                os.chown(self.box, self.uid, self.uid)
        finally:
            os.chmod(self.wdir, 0o511)  # no write: `rm -rf ..` from the box cannot work

    def uid_can_read_python(self) -> bool:
        """Probe (in a throwaway child) whether the sandbox uid can read the stdlib."""
        pid = os.fork()
        if pid == 0:
            try:
                protect.drop_privileges(self.uid)
                with open(os.__file__, "rb"):
                    os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    def child_nproc(self):
        if self.uid is not None:
            return self.extra_nproc
        if not protect.LINUX:
            return None
        if self.nproc is None or self.jobs % NPROC_REFRESH == 0:
            self.nproc = protect.count_user_processes(os.getuid()) + self.extra_nproc
        return self.nproc

    def child_limits(self, cpu_s: int, memory_mb, output_bytes: int) -> list:
        """The setrlimit calls a child makes: the CPU limit, and whatever this worker does not
        already hold for it."""
        memory_mb = memory_mb if self.rlimit_memory else None
        nproc = self.child_nproc()
        key = (cpu_s, memory_mb, output_bytes, nproc)
        if key != self._limits_key:  # the same for every job of a pool: worked out once
            fixed = self.fixed
            self._limits_key = key
            self._limits = protect.limit_plan(
                cpu_s=cpu_s, memory_mb=memory_mb if memory_mb != fixed["memory_mb"] else None,
                file_bytes=output_bytes if output_bytes != fixed["output_bytes"] else None, nproc=nproc)
        return self._limits

    # -- one candidate --------------------------------------------------------------------
    def run_job(self, job: dict) -> bytes:
        """Run one candidate; returns the reply line."""
        timeout = float(job["timeout_s"])
        cap = int(job["output_bytes"])
        settings = {"output_bytes": cap, "uid": self.uid, "import_assist": self.import_assist,
                    "limits": self.child_limits(int(timeout) + 2, job.get("memory_mb"), cap),
                    "compiled": precompile(job.get("code"))}
        self.jobs += 1
        report_cap = 2 * cap + REPORT_OVERHEAD
        # Set up before the fork: while the child lives, each page this process writes is
        # a copy-on-write fault (~4x the cost of the re-use fault it is once the child is gone).
        r, w = os.pipe()
        os.set_blocking(r, False)
        poller = select.poll()
        poller.register(r, select.POLLIN)
        data = bytearray()
        reason, status, pidfd = None, None, None
        limit = (job.get("memory_mb") or 0) * 1024 * 1024
        pipe_open, exited = True, False
        wait_ms = 1.0
        sys.stdout.flush()
        t0 = time.monotonic()
        deadline = t0 + timeout
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                child.run(job, w, self.box, settings)
            finally:
                os._exit(70)
        os.close(w)
        if HAVE_PIDFD:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pass
            else:
                poller.register(pidfd, select.POLLIN)
        while reason is None:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            step = left if pidfd is not None else min(left, wait_ms / 1000)
            if self.rss_watch:
                step = min(step, 0.02)
            for fd, _ in poller.poll(max(0, step) * 1000):
                if fd != r:
                    exited = True  # the pidfd: the child is gone
                    continue
                try:
                    chunk = os.read(r, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    poller.unregister(r)
                    pipe_open = False
                    continue
                data += chunk
                if len(data) > report_cap:
                    reason = "output_limit"
                elif data.endswith(child.DONE_LINE):
                    reason = "done"
            if reason is None and (pidfd is None or exited):
                got, st = os.waitpid(pid, os.WNOHANG)
                if got:
                    status, reason = st, "exited"
                    if pipe_open:  # what the child wrote before dying
                        data += drain(r, report_cap + 1 - len(data))
            if reason is None and self.rss_watch and limit and self.memory_of(pid) > limit:
                reason = "memory"
            wait_ms = min(wait_ms * 2, 20.0)
        duration = time.monotonic() - t0
        os.close(r)
        if pidfd is not None:
            os.close(pidfd)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _, status = os.waitpid(pid, 0)
        leftovers = self.sweep()
        self.reset_box()
        if os.WIFSIGNALED(status):
            end = ', "signal": %d}\n' % os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            end = ', "exit": %d}\n' % os.WEXITSTATUS(status)
        else:
            end = "}\n"
        # The reply line written out directly, not through json.dumps: after each fork every
        # page the worker writes costs a fault, and json.dumps touches ~40 of them.
        return ('{"id": %d, "reason": "%s", "duration_s": %.4f, "leftovers": %d, "report": %s%s' % (
            job["id"], reason, duration, leftovers, quote(bytes(data[:report_cap]).decode("ascii", "replace")),
            end)).encode("ascii")

    def memory_of(self, pid: int) -> int:
        pids = [pid] + (protect.children_of(pid) if protect.LINUX else [])
        return sum(protect.rss_bytes(p) for p in pids)

    def sweep(self) -> int:
        """Kill and reap every descendant still alive (setsid grandchildren included: as a
        subreaper, orphans become our children). Returns how many were killed."""
        killed = 0
        me = os.getpid()
        for attempt in range(500):
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                return killed  # no children at all: nothing escaped
            if not protect.LINUX:
                return killed
            todo, seen = protect.children_of(me), set()
            while todo:
                p = todo.pop()
                if p in seen:
                    continue
                seen.add(p)
                try:
                    os.kill(p, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
                todo.extend(protect.children_of(p))
            time.sleep(min(0.001 * (attempt + 1), 0.02))
        return killed


def precompile(source):
    """The candidate's code object, compiled here before the fork, or None (then the child
    compiles it and reports the error).

    Compiling in the child dirtied ~85 of its pages, each a copy-on-write fault (~3.5 us on
    this VM); here the same pages cost the worker only a cheap re-use fault, and the child
    touches just the code objects. Compiling never runs the candidate; a pathological source
    can at worst crash or stall this worker, which the pool then replaces. Big sources are
    left to the child, whose memory is limited."""
    if type(source) is not str or len(source) > PRECOMPILE_MAX_CHARS:
        return None
    try:
        return child.compile_candidate(source)
    except Exception:
        return None


def drain(fd: int, room: int) -> bytes:
    """What the non-blocking pipe holds now, until end of file or about `room` bytes."""
    chunks = []
    while room > 0:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        room -= len(chunk)
    return b"".join(chunks)


def remove_tree(path: str) -> None:
    """rm -rf that also gets through directories a candidate made unreadable."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for name in os.listdir(path):
        remove_tree(os.path.join(path, name))
    os.rmdir(path)


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    worker = Worker(json.loads(stdin.readline()))
    stdout.write((json.dumps({"ready": True, "pid": os.getpid(), "protections": worker.protections}) + "\n").encode())
    stdout.flush()
    scan = json.JSONDecoder().scan_once  # the C scanner alone: json.loads adds Python frames
    for line in stdin:
        job = scan(line.decode("ascii"), 0)[0]
        try:
            reply = worker.run_job(job)
        except Exception as exc:  # the worker's own failure, reported, not fatal
            reply = (json.dumps({"id": job.get("id"), "reason": "worker_error", "error": f"{type(exc).__name__}: {exc}",
                                 "report": "", "duration_s": 0.0}) + "\n").encode("ascii")
        stdout.write(reply)
        stdout.flush()
    worker.sweep()


if __name__ == "__main__":
    main()
