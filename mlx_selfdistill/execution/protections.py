"""The protections report: what actually holds for candidates on this machine, per area.

Every isolation backend (Linux: Landlock, namespaces, seccomp, uid switch; macOS: Seatbelt)
fills the same five areas, each `{"ok": bool, "how": str}`:

    filesystem  an allow-list: writes only in the candidate's box, reads only what Python needs
    network     no network
    processes   no signal, ptrace or /proc/<pid>/environ of anything outside its own tree
    uid         a uid of its own (not the pool's)
    disk        a bound on the bytes and files a candidate may write, not only per file

The pool refuses to start when a REQUIRED area is not ok, unless the caller allows running
without isolation (--unsafe-no-isolation). Stdlib only: the worker imports this file.
"""

from __future__ import annotations

AREAS = ("filesystem", "network", "processes", "uid", "disk")
REQUIRED = ("filesystem",)
FIXES = {
    "filesystem": "needs Landlock (Linux 5.13+ with the landlock LSM enabled) or macOS sandbox-exec",
}


def entry(ok: bool, how: str) -> dict:
    return {"ok": bool(ok), "how": how}


def missing(report: dict, required=REQUIRED) -> list[str]:
    """The required areas the report does not show as in force."""
    return [area for area in required if not (report.get(area) or {}).get("ok")]


def refusal(report: dict) -> str | None:
    """The one-line reason a pool must not start with this report, or None."""
    gaps = missing(report)
    if not gaps:
        return None
    area = gaps[0]
    how = (report.get(area) or {}).get("how") or "not available"
    return (f"the sandbox cannot put its {area} allow-list in place here ({how}; {FIXES.get(area, '')}); "
            "pass --unsafe-no-isolation to run untrusted candidates without it")


def rows(report: dict) -> list[tuple[str, bool, str]]:
    """(area, ok, how) for each area, in the fixed order: what the CLI prints."""
    return [(area, bool((report.get(area) or {}).get("ok")), (report.get(area) or {}).get("how", "unknown"))
            for area in AREAS]
