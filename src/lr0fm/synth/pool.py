"""The synthetic image pool on disk: captions in, per-image seeds, file names, the manifest and the run lock.

Nothing here imports torch or diffusers, so the token trainer can read a pool cheaply.

Layout of a pool folder:
    manifest.jsonl        one JSON object per image: file, group (caption id), index, caption, seed
    synth.json            the generation settings, checked when a run resumes
    00000/000.png ...     image `index` of caption `group`
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import UserError
from ..fileio import atomic_path

log = logging.getLogger("lr0fm.synth")

MANIFEST = "manifest.jsonl"
SETTINGS = "synth.json"
LOCK = ".synth.lock"
TEMP_PREFIX = ".partial-"
CAPTIONS_SOURCE = "github.com/shyammarjit/LR0.FM, folder Captions/ (caption_2k.txt and caption_5k.txt)"

# Settings that change the pixels: a resumed run must match them, or the pool would mix two recipes.
FIXED_SETTINGS = ("seed", "steps", "guidance", "size", "store_size", "seed_scheme")
# Settings that may legitimately differ (a moved model folder, another GPU); a mismatch is only a warning.
SOFT_SETTINGS = ("model", "dtype", "clean_caption")
SEED_SCHEME = "sha256('lr0fm-synth:{seed}:{group}:{index}')[:8] mod 2**63"


def read_captions(paths: str | Path | Sequence[str | Path]) -> list[str]:
    """Captions from one or more text files, one a line, stripped; blank lines are skipped.

    Ids are positions in the returned list, so several files continue each other's numbering
    (caption_2k.txt then caption_5k.txt gives the paper's ids 0-6999). Duplicates keep separate ids.
    """
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not files:
        raise UserError("No captions file given; pass --captions FILE (one caption per line).")
    captions: list[str] = []
    for file in files:
        path = Path(file).expanduser()
        if not path.is_file():
            raise UserError(f"Captions file {path} does not exist; pass a text file with one caption per line "
                            f"(the paper's 7,000 are at {CAPTIONS_SOURCE}).")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"Cannot read captions file {path} ({error}); pass a UTF-8 text file, one caption per line.") from None
        captions.extend(line.strip() for line in text.splitlines() if line.strip())
    if not captions:
        raise UserError(f"No captions in {', '.join(str(f) for f in files)}; put one caption per line.")
    repeated = {caption: n for caption, n in Counter(captions).items() if n > 1}
    if repeated:
        example = next(iter(repeated))
        log.warning("%d caption(s) appear more than once (%d extra lines, e.g. %r); each line keeps its own id.",
                    len(repeated), sum(repeated.values()) - len(repeated), example)
    return captions


def image_seed(seed: int, group: int, index: int) -> int:
    """The generator seed of image `index` of caption `group`: fixed, whatever subset or order is generated."""
    digest = hashlib.sha256(f"lr0fm-synth:{seed}:{group}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


def image_file(group: int, index: int) -> str:
    """Path of an image relative to the pool folder."""
    return f"{group:05d}/{index:03d}.png"


@dataclass(frozen=True)
class Job:
    group: int
    index: int
    caption: str
    seed: int

    @property
    def file(self) -> str:
        return image_file(self.group, self.index)

    def entry(self) -> dict:
        return {"file": self.file, "group": self.group, "index": self.index, "caption": self.caption, "seed": self.seed}


def plan(captions: Sequence[str], per_caption: int, seed: int) -> list[Job]:
    return [Job(group, index, caption, image_seed(seed, group, index))
            for group, caption in enumerate(captions) for index in range(per_caption)]


def read_manifest(pool: str | Path, strict: bool = True) -> list[dict]:
    """The manifest's entries, in file order. With strict=False a broken line (a killed append) is dropped."""
    path = Path(pool) / MANIFEST
    if not path.is_file():
        if strict:
            raise UserError(f"No {MANIFEST} in {pool}; make the pool with `lr0fm synth --out {pool}`.")
        return []
    entries = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry.get("file"), str) or not isinstance(entry.get("group"), int):
                    raise ValueError("needs file and group")
            except (ValueError, AttributeError) as error:
                if strict:
                    raise UserError(f"{path} line {number} is not a manifest entry ({error}); rerun `lr0fm synth` "
                                    f"with the same options to repair it.") from None
                log.warning("Dropping unreadable line %d of %s.", number, path)
                continue
            entries.append(entry)
    return entries


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, so a reader never sees half a file."""
    with atomic_path(path, prefix=TEMP_PREFIX) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _entry_line(entry: dict) -> str:
    return json.dumps(entry, ensure_ascii=False) + "\n"


def write_manifest(pool: Path, entries: Iterable[dict]) -> None:
    ordered = sorted(entries, key=lambda e: (e["group"], e.get("index", 0), e["file"]))
    _atomic_write(pool / MANIFEST, "".join(_entry_line(e) for e in ordered))


def append_manifest(pool: Path, entries: Sequence[dict]) -> None:
    """Append whole lines and sync; a line cut by a kill is dropped and repaired by the next run."""
    with (pool / MANIFEST).open("a", encoding="utf-8") as handle:
        handle.write("".join(_entry_line(e) for e in entries))
        handle.flush()
        os.fsync(handle.fileno())


def save_image(image, pool: Path, file: str) -> None:
    """Save as PNG under a temporary name, then rename: a killed run leaves no half-written image."""
    target = pool / file
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, prefix=TEMP_PREFIX) as tmp:
        image.save(tmp, format="PNG")


@contextlib.contextmanager
def locked(pool: Path) -> Iterator[None]:
    """Hold the pool for one run: two runs appending to one manifest would interleave."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run at a time is up to the user.
        yield
        return
    with (pool / LOCK).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"Another lr0fm synth run is writing to {pool}; wait for it to finish or use another --out.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_settings(pool: Path, settings: dict, fixed: bool = True, soft: bool = True) -> None:
    """Refuse to resume a pool made with other pixel-changing settings; warn on softer differences."""
    path = pool / SETTINGS
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("Ignoring unreadable %s; it will be rewritten.", path)
        return
    changed = [f"{key} {previous.get(key)!r} -> {settings.get(key)!r}" for key in FIXED_SETTINGS
               if fixed and key in previous and previous[key] != settings.get(key)]
    if changed:
        raise UserError(f"{pool} was made with other settings ({'; '.join(changed)}); rerun with the same options "
                        f"to resume it, or pick a new --out.")
    for key in SOFT_SETTINGS if soft else ():
        if key in previous and key in settings and previous[key] != settings[key]:
            log.warning("%s was made with %s=%r, this run uses %r; images from the two runs may differ slightly.",
                        pool, key, previous[key], settings.get(key))


def write_settings(pool: Path, settings: dict) -> None:
    _atomic_write(pool / SETTINGS, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")


def reconcile(pool: Path, jobs: Sequence[Job]) -> tuple[list[dict], list[Job]]:
    """Match the manifest with the images on disk; returns (entries to keep, jobs still to generate).

    Entries whose image is gone are dropped, images that a killed run wrote before recording them are
    recorded, and leftover temporary files are removed. A planned caption id whose recorded caption differs
    means the pool came from another captions file, which is refused.
    """
    for stale in pool.glob(f"*/{TEMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    for stale in pool.glob(f"{TEMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    by_group = {}
    for job in jobs:
        by_group.setdefault(job.group, job.caption)
    present: dict[str, set[str]] = {}

    def exists(file: str) -> bool:
        folder, _, name = file.rpartition("/")
        if folder not in present:
            directory = pool / folder
            present[folder] = set(os.listdir(directory)) if directory.is_dir() else set()
        return name in present[folder]

    kept: dict[str, dict] = {}
    for entry in read_manifest(pool, strict=False):
        group = entry["group"]
        if group in by_group and entry.get("caption") is not None and entry["caption"] != by_group[group]:
            raise UserError(f"{pool} holds images of another caption for id {group} ({entry['caption']!r}, "
                            f"not {by_group[group]!r}); use the captions file it was made from, or a new --out.")
        if entry["file"] not in kept and exists(entry["file"]):
            kept[entry["file"]] = entry
    pending = []
    for job in jobs:
        if job.file in kept:
            continue
        if exists(job.file):
            kept[job.file] = job.entry()
        else:
            pending.append(job)
    return list(kept.values()), pending
