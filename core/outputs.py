"""Writing to a path a user names, without destroying anything the studio did not write.

Why one module: ``export --overwrite --out $STUDIO_HOME`` once deleted the studio's whole state,
``--out studio.duckdb`` the database, and a FIFO or device node was replaced by a plain file. The
rule, for the Generate page, ``export`` and every other writer of user-named paths:

* the output is written into a temporary folder next to the target and renamed into place, so an
  interrupted write never leaves half a file that looks complete;
* an existing target is replaced only with ``overwrite`` and only when the studio wrote it: a
  folder holds a manifest (:data:`MANIFEST`) listing every file in it, a file has a hidden sidecar
  manifest (``.NAME.studio-export.json``) with its size and SHA-256; anything else, or a folder
  with a file the manifest does not list, is refused;
* links, FIFOs, sockets and devices are never written over;
* ``/``, the user's home, STUDIO_HOME, STUDIO_CACHE and the folders above them are refused, and so
  is anything inside STUDIO_HOME or STUDIO_CACHE except STUDIO_HOME/exports (where the page writes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core import settings
from core.errors import BadInput
from core.inputs import MAX_PART_BYTES, check_path, load_json, quote, read_bytes, special_kind
from core.procs import write_json

MANIFEST = ".studio-export.json"
SIDECAR_SUFFIX = ".studio-export.json"
MAX_MANIFEST_BYTES = 1024 * 1024
EXPORTS = "exports"            # the folder under STUDIO_HOME that the page writes into
WRITTEN_BY = "the studio"


def sidecar(path: Path) -> Path:
    """Where the manifest of a single-file output lives: a hidden file next to it."""
    return path.with_name(f".{path.name}{SIDECAR_SUFFIX}")


def _absolute(path: Path) -> Path:
    """The path the OS will write: its folder resolved (links included), its last part kept, so a
    link at the target itself is seen and refused rather than followed."""
    path = Path(os.path.abspath(path))
    try:
        return path if path.parent == path else path.parent.resolve() / path.name
    except (OSError, RuntimeError) as exc:  # a link loop, a folder that cannot be read
        raise BadInput(f"The path {quote(str(path), 200)} cannot be used ({exc}).", hint="Choose another path.") from None


def _protected(target: Path) -> str | None:
    """Why ``target`` may never be written by an export, or None."""
    cfg = settings.current()
    home, cache, user = cfg.home.resolve(), cfg.cache_dir.resolve(), Path.home().resolve()
    for place, name in ((home, "STUDIO_HOME"), (user, "your home folder"), (cache, "STUDIO_CACHE")):
        if target == place or place.is_relative_to(target):
            return f"is {name} or a folder that holds it" if target != Path("/") else "is the root folder"
    if target.is_relative_to(home) and not target.is_relative_to(home / EXPORTS):
        return f"is inside STUDIO_HOME, which holds the studio's own data (exports go in {home / EXPORTS})"
    if target.is_relative_to(cache):
        return "is inside STUDIO_CACHE, the studio's download cache"
    return None


def check_target(path: str | os.PathLike, *, folder: bool, overwrite: bool, what: str = "export") -> Path:
    """The absolute target for an output, or a BadInput saying why writing there could destroy data."""
    target = _absolute(check_path(path, f"{what} path"))
    shown = quote(str(target), 200)
    why = _protected(target)
    if why:
        raise BadInput(f"The {what} path {shown} {why}.", hint="Choose a new file or folder of your own.")
    if len(sidecar(target).name.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
        raise BadInput(f"The {what} name {quote(target.name)} is too long.",
                       hint=f"Use a file name under {MAX_PART_BYTES - len(SIDECAR_SUFFIX) - 1} bytes.")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:  # ENOTDIR (a file in the middle of the path), EACCES
        raise BadInput(f"The {what} path {shown} cannot be used ({exc.strerror or exc}).",
                       hint="Choose another path.") from None
    kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a file" if stat.S_ISREG(info.st_mode) \
        else special_kind(info.st_mode)
    if kind not in ("a folder", "a file"):
        raise BadInput(f"The {what} path {shown} is {kind}; the studio never writes over one.",
                       hint="Choose a new file or folder.")
    if (kind == "a folder") != folder:
        raise BadInput(f"{shown} is {kind}; the {what} writes {'a folder' if folder else 'a file'}.",
                       hint="Choose another path.")
    if not overwrite:
        raise BadInput(f"{shown} already exists.", hint="Choose another path, or allow overwriting (--overwrite).")
    if not written_by_studio(target, folder=folder):
        raise BadInput(f"{shown} exists and the studio did not write it (it has no studio manifest, or it "
                       "changed since), so it is not overwritten.",
                       hint="Choose another path, or move that one away yourself.")
    return target


# -- manifests ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(path: Path) -> dict | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # a link planted as a manifest vouches for nothing
            return None
        data = load_json(read_bytes(path, "manifest", MAX_MANIFEST_BYTES), "manifest", MAX_MANIFEST_BYTES)
    except (OSError, BadInput):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == WRITTEN_BY else None


def _folder_files(folder: Path) -> dict[str, int] | None:
    """Every regular file under ``folder`` with its size; None when anything else is there."""
    found: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                return None
            found[path.relative_to(folder).as_posix()] = info.st_size
    return found


def written_by_studio(path: Path, *, folder: bool) -> bool:
    """Whether ``path`` is an output the studio wrote and nobody changed: its manifest is there
    and lists exactly what is there now."""
    if folder:
        manifest = _read_manifest(path / MANIFEST)
        files = _folder_files(path) if manifest else None
        return files is not None and {k: v for k, v in files.items() if k != MANIFEST} == manifest.get("files")
    manifest = _read_manifest(sidecar(path))
    try:
        return bool(manifest) and os.lstat(path).st_size == manifest.get("size") and _sha256(path) == manifest.get("sha256")
    except OSError:
        return False


def _manifest_for(staged: Path, folder: bool, details: dict) -> dict:
    base = {"written_by": WRITTEN_BY, **details}
    if folder:
        return {**base, "files": _folder_files(staged) or {}}
    return {**base, "size": staged.stat().st_size, "sha256": _sha256(staged)}


# -- writing ----------------------------------------------------------------------------------------
@contextmanager
def staged_output(path: str | os.PathLike, *, folder: bool, overwrite: bool = False, what: str = "export",
                  details: dict | None = None) -> Iterator[Path]:
    """Yield a path in a temporary folder next to the target; write the output there. When the
    block ends without an error, the output is renamed into place (replacing the studio's own
    earlier output only) with its manifest; otherwise nothing at the target changes."""
    target = check_target(path, folder=folder, overwrite=overwrite, what=what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".studio-export-", suffix=".partial", dir=target.parent))
    except OSError as exc:
        raise BadInput(f"The {what} cannot be written in {quote(str(target.parent), 200)} ({exc.strerror or exc}).",
                       hint="Choose a folder you can write to.") from None
    try:
        yield work / "output"
        _publish(work, target, folder, overwrite, what, details or {})
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        raise BadInput(f"The {what} could not be written to {quote(str(target), 200)} ({exc.strerror or exc}); "
                       "nothing there changed.", hint="Free some space or choose another folder.") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(work: Path, target: Path, folder: bool, overwrite: bool, what: str, details: dict) -> None:
    staged = work / "output"
    manifest = _manifest_for(staged, folder, details)
    check_target(target, folder=folder, overwrite=overwrite, what=what)  # again: it may have changed meanwhile
    if folder:
        write_json(staged / MANIFEST, manifest)
        replaced = target.exists()
        if replaced:
            os.rename(target, work / "replaced")
        try:
            os.rename(staged, target)
        except BaseException:
            if replaced:
                os.rename(work / "replaced", target)
            raise
    else:
        os.replace(staged, target)
        write_json(sidecar(target), manifest)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False, what: str = "file") -> Path:
    """Write one text file by the rule above; returns where it went."""
    with staged_output(path, folder=False, overwrite=overwrite, what=what) as staged:
        staged.write_text(text, encoding="utf-8")
    return _absolute(check_path(path))
