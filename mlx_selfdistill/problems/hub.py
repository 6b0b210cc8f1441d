"""Fetch dataset files from the Hugging Face hub (cached by huggingface_hub).

A cached file is used without touching the network. Otherwise the hub host is probed
first, so with no network a fetch fails at once (not after huggingface_hub's retries)
with one line naming the dataset and how to pass a local copy instead.
"""

from __future__ import annotations

import fnmatch
import socket
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlparse

from ..errors import UserError


class RemoteFileMissing(UserError):
    """The hub answered, but the repo has no such file."""


def _fail(repo_id: str, what: str, reason: str, local_hint: str) -> UserError:
    return UserError(
        f"could not fetch dataset {repo_id} ({what}) from the Hugging Face hub: {reason}; "
        f"download it where you have network and pass the local file instead, e.g. `{local_hint}`"
    )


def _reason(exc: Exception) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _offline_reason() -> Optional[str]:
    """Why the hub cannot be reached right now, or None if it looks reachable."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE) and the file is not in the local cache"
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
    except OSError as exc:
        return f"no network ({url.hostname} unreachable: {exc.strerror or exc})"
    return None


def hub_file(repo_id: str, filename: str, *, local_hint: str, cache_dir=None, revision: Optional[str] = None) -> Path:
    from huggingface_hub import hf_hub_download

    kw = dict(repo_type="dataset", cache_dir=cache_dir, revision=revision)
    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True, **kw))
    except Exception:
        pass  # not cached: go to the network
    reason = _offline_reason()
    if reason:
        raise _fail(repo_id, filename, reason, local_hint)
    try:
        return Path(hf_hub_download(repo_id, filename, **kw))
    except Exception as exc:  # auth, missing file, network drop: all one line to the user
        if "EntryNotFound" in type(exc).__name__ and "Local" not in type(exc).__name__:
            raise RemoteFileMissing(f"dataset {repo_id} has no file {filename}") from None
        raise _fail(repo_id, filename, _reason(exc), local_hint) from None


def cached_files(repo_id: str, cache_dir=None) -> list[str]:
    """Files of a dataset repo already in the local huggingface_hub cache (any snapshot)."""
    from huggingface_hub import constants

    snapshots = Path(cache_dir or constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    found = set()
    for snap in snapshots.glob("*"):
        found.update(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    return sorted(found)


def hub_list(repo_id: str, pattern: str, *, local_hint: str, revision: Optional[str] = None,
             cache_dir=None) -> list[str]:
    """Files of a dataset repo matching a glob, sorted (the shards of a config). Offline, or
    when the hub cannot be listed, the cached files stand in for the listing."""
    cached = [f for f in cached_files(repo_id, cache_dir) if fnmatch.fnmatch(f, pattern)]
    reason = _offline_reason()
    if reason:
        if cached:
            return cached
        raise _fail(repo_id, pattern, reason, local_hint)
    try:
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision)
    except Exception as exc:
        if cached:
            return cached
        raise _fail(repo_id, pattern, _reason(exc), local_hint) from None
    found = sorted(f for f in files if fnmatch.fnmatch(f, pattern))
    if not found:
        raise RemoteFileMissing(f"dataset {repo_id} has no files matching {pattern}; "
                                f"pass a local file instead: `{local_hint}`")
    return found


def hub_first_file(repo_id: str, candidates: list[str], *, local_hint: str, cache_dir=None) -> Path:
    """The first of several possible file names (exact names, or globs resolved by listing)."""
    for name in candidates:
        try:
            if any(c in name for c in "*?["):
                name = hub_list(repo_id, name, local_hint=local_hint, cache_dir=cache_dir)[0]
            return hub_file(repo_id, name, local_hint=local_hint, cache_dir=cache_dir)
        except RemoteFileMissing:
            continue
    raise UserError(f"dataset {repo_id} has none of {', '.join(candidates)}; pass a local file instead: "
                    f"`{local_hint}`")


def hub_files_lazily(repo_id: str, filenames: list[str], *, local_hint: str, cache_dir=None) -> Iterator[Path]:
    """Download shard by shard, so a consumer that stops early downloads no more."""
    for name in filenames:
        yield hub_file(repo_id, name, local_hint=local_hint, cache_dir=cache_dir)
