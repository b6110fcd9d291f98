"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

    with atomic_path(out / "classifier.safetensors") as tmp:
        save_file(tensors, tmp)            # any writer that takes a path
    write_text_atomic(out / "weights.json", text)

The new content goes to a hidden temporary file in the destination's folder (`.NAME.XXXX.tmp`), which is
flushed to disk and then renamed over the destination; the folder is flushed too where the OS allows it, so
the rename survives a power cut. Torch-free.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _create_temp(folder: Path, prefix: str) -> Path:
    """A new empty file `folder/PREFIXxxxxxxxx.tmp`, with the permissions `open` would give it."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"No free temporary name {prefix}*.tmp in {folder}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where the OS cannot open a folder.

    Args:
        folder: an existing folder.
    """
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextmanager
def atomic_path(path: str | Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one step.

    Args:
        path: the destination file; its folder must exist.
        prefix: start of the temporary file's name; defaults to ".NAME." for destination NAME. It should
            start with "." so that folder listings skip unfinished files.

    Yields:
        An empty temporary file's path in the same folder as `path`, ending in ".tmp".

    Raises:
        Whatever the block raises; the temporary file is then removed and an existing `path` is left as it was.
    """
    path = Path(path)
    tmp = _create_temp(path.parent, f".{path.name}." if prefix is None else prefix)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically.

    Args:
        path: the destination file; its folder must exist.
        text: the whole new content.
        encoding: text encoding.

    Returns:
        `path` as a Path.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically.

    Args:
        path: the destination file; its folder must exist.
        data: the whole new content.

    Returns:
        `path` as a Path.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


__all__ = ["atomic_path", "fsync_folder", "write_bytes_atomic", "write_text_atomic"]
