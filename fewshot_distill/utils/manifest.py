"""A folder's manifest (each file's size and sha256) and the check of a folder against it.

The atomic `.tmp` rename guarantees a folder was complete when it was published, not that it still
is: a full disk, a crashed copy or a bad block can damage a file afterwards. The manifest is the last
file written before the rename, so a folder with a manifest was complete, and any later change to a
listed file (cut short, bytes changed, deleted) is found by `verify_manifest`.

    write_manifest(tmp_folder)                 # just before publish_folder(tmp_folder, folder)
    check = verify_manifest(folder)            # FolderCheck: "ok", "unverified" or "damaged"
    if check.damaged: print(check.describe())  # names every bad file

Files present but not listed (e.g. added later by hand) do not make a folder damaged: nothing that
was written with it has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fewshot_distill.utils.io import atomic_write_json

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
OK, UNVERIFIED, DAMAGED = "ok", "unverified", "damaged"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: str | Path) -> list[str]:
    """Relative paths (posix) of every file under `folder` except the manifest, sorted."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)


def write_manifest(folder: str | Path) -> dict:
    """Write `folder/manifest.json` listing every other file's size and sha256; returns it."""
    folder = Path(folder)
    files = [{"path": name, "size": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
             for name in folder_files(folder)]
    manifest = {"version": MANIFEST_VERSION, "files": files}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


@dataclass(frozen=True)
class FolderCheck:
    folder: Path
    status: str                      # OK, UNVERIFIED (no manifest) or DAMAGED
    problems: tuple[str, ...] = field(default_factory=tuple)  # one per bad file, e.g. "x: missing"

    @property
    def damaged(self) -> bool:
        return self.status == DAMAGED

    def describe(self) -> str:
        if self.status == DAMAGED:
            return f"{self.folder} is damaged: {'; '.join(self.problems)}"
        if self.status == UNVERIFIED:
            return f"{self.folder} has no {MANIFEST} (written before checkpoints were verified): not verified"
        return f"{self.folder} verified"


def read_manifest(folder: str | Path) -> list[dict]:
    """The manifest's file entries; ValueError when it cannot be read or is malformed."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
        files = manifest["files"]
        for entry in files:
            if not (isinstance(entry["path"], str) and isinstance(entry["size"], int)
                    and isinstance(entry["sha256"], str)):
                raise TypeError(entry)
        return files
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{MANIFEST} is unreadable ({type(error).__name__})") from None


def verify_manifest(folder: str | Path, include: Callable[[str], bool] | None = None) -> FolderCheck:
    """Check every listed file (or those `include(path)` accepts) for presence, size and sha256."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return FolderCheck(folder, UNVERIFIED)
    try:
        entries = read_manifest(folder)
    except ValueError as error:
        return FolderCheck(folder, DAMAGED, (str(error),))
    problems = []
    for entry in entries:
        name = entry["path"]
        if include is not None and not include(name):
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (size := path.stat().st_size) != entry["size"]:
            problems.append(f"{name}: {size} bytes, the manifest says {entry['size']} (cut short or extended)")
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (content changed)")
    return FolderCheck(folder, DAMAGED if problems else OK, tuple(problems))
