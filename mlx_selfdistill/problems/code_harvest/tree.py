"""Read a Python codebase into memory: a source folder, an installed package's folder, or an sdist.

The harvester never imports or runs what it reads here, and never writes it to disk: an
sdist (.tar.gz, .tgz, .zip) is read member by member from the archive, and a member whose
path could escape (absolute, `..`, a link, a device) is refused rather than skipped, since a
well-made sdist has none. Files are keyed by their path relative to the codebase's root
(an sdist's single top folder, `pkg-1.0/`, is removed).
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ...errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
MAX_FILE_BYTES = 2_000_000  # a .py file larger than this is data, not code worth harvesting
SKIP_DIRS = {".git", ".hg", ".tox", ".nox", ".venv", "venv", "node_modules", "build", "dist", "__pycache__",
             ".eggs", "site-packages"}


@dataclass
class SourceTree:
    """The .py files of a codebase: {relative posix path: text}, with where they came from."""
    name: str  # the codebase's name (sdist or folder name without its version)
    origin: str  # the path the user gave
    version: str = ""  # the sdist's version, or the git commit of a checkout
    files: dict = field(default_factory=dict)
    unreadable: list = field(default_factory=list)  # (path, why) of files that could not be decoded

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self.files[path].encode("utf-8", "surrogatepass") + b"\0")
        return h.hexdigest()


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _sdist_name(path: Path) -> tuple[str, str]:
    stem = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    m = re.fullmatch(r"(.+?)-(\d[\w.+!-]*)", stem)
    return (m.group(1), m.group(2)) if m else (stem, "")


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
        raise UserError(f"{archive}: refusing member {name!r}, whose path leaves the archive; "
                        "is this a real sdist?")
    return p


def _strip_top(paths: dict) -> dict:
    tops = {PurePosixPath(p).parts[0] for p in paths}
    if len(tops) == 1 and all(len(PurePosixPath(p).parts) > 1 for p in paths):
        return {str(PurePosixPath(*PurePosixPath(p).parts[1:])): t for p, t in paths.items()}
    return paths


def _skipped(parts) -> bool:
    return any(part in SKIP_DIRS or part.endswith(".egg-info") for part in parts[:-1])


def read_archive(path: Path) -> SourceTree:
    name, version = _sdist_name(path)
    tree = SourceTree(name=name, origin=str(path), version=version)
    raw: dict = {}
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    p = _safe_member(info.filename, path)
                    mode = (info.external_attr >> 16) & 0o170000
                    if info.is_dir() or not p.name.endswith(".py") or _skipped(p.parts):
                        continue
                    if mode not in (0, 0o100000):  # a symlink or device stored in the zip
                        raise UserError(f"{path}: refusing member {info.filename!r}: not a regular file")
                    if info.file_size <= MAX_FILE_BYTES:
                        raw[str(p)] = zf.read(info)
        else:
            with tarfile.open(path, "r:*") as tf:
                for member in tf:
                    p = _safe_member(member.name, path)
                    if member.isdir():
                        continue
                    if not member.isfile():  # links, devices, fifos
                        if p.name.endswith(".py"):
                            raise UserError(f"{path}: refusing member {member.name!r}: not a regular file")
                        continue
                    if not p.name.endswith(".py") or _skipped(p.parts) or member.size > MAX_FILE_BYTES:
                        continue
                    fh = tf.extractfile(member)
                    raw[str(p)] = fh.read() if fh else b""
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise UserError(f"{path}: not a readable sdist archive ({exc}); pass a .tar.gz, .zip or a folder") from None
    for rel, data in _strip_top(raw).items():
        text = _decode(data)
        if text is None:
            tree.unreadable.append((rel, "not UTF-8"))
        else:
            tree.files[rel] = text
    return tree


def _git_commit(folder: Path) -> str:
    """The checked-out commit of a git work tree, read from .git without running git."""
    for d in [folder, *folder.parents]:
        head = d / ".git" / "HEAD"
        if head.is_file():
            text = head.read_text(errors="replace").strip()
            if text.startswith("ref: "):
                ref = d / ".git" / text[5:]
                if ref.is_file():
                    return ref.read_text(errors="replace").strip()[:40]
                packed = d / ".git" / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text(errors="replace").splitlines():
                        if line.endswith(" " + text[5:]):
                            return line.split()[0][:40]
                return ""
            return text[:40]
    return ""


def read_folder(path: Path) -> SourceTree:
    name = path.resolve().name
    tree = SourceTree(name=name, origin=str(path), version=_git_commit(path.resolve()))
    # An installed package's folder is the package itself: keep its name in the paths.
    base = path.parent if (path / "__init__.py").is_file() else path
    for f in sorted(path.rglob("*.py")):
        rel = f.relative_to(base)
        if _skipped(rel.parts) or f.is_symlink() or not f.is_file() or f.stat().st_size > MAX_FILE_BYTES:
            continue
        text = _decode(f.read_bytes())
        if text is None:
            tree.unreadable.append((rel.as_posix(), "not UTF-8"))
        else:
            tree.files[rel.as_posix()] = text
    return tree


def read_tree(path: Path) -> SourceTree:
    """The codebase at `path` (folder, installed package folder, sdist archive, or one .py file)."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; pass a source folder, an installed package's "
                        "folder or an sdist (.tar.gz, .zip)")
    if path.is_dir():
        tree = read_folder(path)
    elif path.name.endswith(ARCHIVE_SUFFIXES):
        tree = read_archive(path)
    elif path.suffix == ".py":
        tree = SourceTree(name=path.stem, origin=str(path), files={path.name: path.read_text(errors="replace")})
    else:
        raise UserError(f"{path}: not a folder, a .py file or an sdist (.tar.gz, .tgz, .zip)")
    if not tree.files:
        raise UserError(f"{path}: no Python files found; pass the folder (or sdist) that holds the package's .py files")
    return tree
