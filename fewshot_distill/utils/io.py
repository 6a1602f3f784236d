"""Atomic file and folder writes: a reader never sees a half-written result.

Also the in-place rewrites of files a run keeps: a generated block between markers, and a JSONL log cut back
to the steps a resumed run keeps; and the reader of local data files (JSONL, or one JSON array)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def publish_folder(tmp_dir: str | Path, final_dir: str | Path) -> None:
    """Move a fully written folder into place (replacing an older one of the same name)."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    if final_dir.exists():
        # rename() cannot replace a non-empty folder: move the old one aside first.
        stale = final_dir.with_name(final_dir.name + ".old.tmp")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final_dir, stale)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)


def replace_between_markers(path: str | Path, start: str, end: str, text: str) -> None:
    """Replace what stands between the `start` and `end` marker lines of a file (a generated README block)
    with `text`; SystemExit naming the markers when the file lacks them."""
    path = Path(path)
    content = path.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"error: {path} lacks the {start} / {end} markers")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}{end}{tail}")


def jsonl_step(line: str) -> int | None:
    """The `step` of one line of a JSONL log (metrics.jsonl, samples.jsonl), or None for a blank or unreadable
    line."""
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def keep_logged_steps(path: str | Path, last_step: int) -> int:
    """Rewrite the JSONL log `path` with only its lines of steps <= `last_step` (a resumed run logs the later
    steps again). Unreadable lines, such as the one a hard kill cut short, are dropped too; returns their
    number."""
    path = Path(path)
    steps = [(line, jsonl_step(line)) for line in path.read_text(errors="replace").splitlines() if line.strip()]
    path.write_text("".join(line + "\n" for line, step in steps if step is not None and step <= last_step))
    return sum(1 for _, step in steps if step is None)


class DataFileError(FileNotFoundError):
    """A local data file that cannot be read as records; the message is one line naming file, line and fix.

    A FileNotFoundError, like fewshot_distill/utils/resources.ResourceError, so the scripts' one-line handlers catch it."""


def read_json_records(path: str | Path) -> list[dict]:
    """The records of a local data file: one JSON object per line (JSONL), or one JSON array of objects.

    Read with the standard library so that local data needs no `datasets` (an offline GPU node may not
    have it). A line that is not a JSON object stops the read with its file and line number."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); fix that line, "
                                "or write the file as JSONL (one object per line)") from None
        lines = range(1, len(records) + 1)
        where = "item"
    else:
        records, lines, where = [], [], "line"
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataFileError(f"{path}:{number}: not a JSON object ({error.msg}); fix or delete that "
                                    "line (JSONL: one complete object per line)") from None
            lines.append(number)
    for number, record in zip(lines, records):
        if not isinstance(record, dict):
            raise DataFileError(f"{path}:{number}: {where} is a JSON {type(record).__name__}, not an object; "
                                "each record must be an object of named fields")
    return records
