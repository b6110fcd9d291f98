"""`folder:PATH` datasets: one sub-folder per class, optional classnames.txt and templates.txt."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..errors import UserError
from .base import ZeroShotDataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}

DEFAULT_TEMPLATES = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a low resolution photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
]

LAYOUT = (
    "PATH/<class>/<image files> (one sub-folder per class; optional PATH/classnames.txt with one readable "
    "name per line in sorted sub-folder order, and PATH/templates.txt with one prompt per line containing {})"
)


def _broken_link(path: Path) -> bool:
    """A symbolic link whose target is missing or is a loop of links."""
    return path.is_symlink() and not path.exists()


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class FolderDataset(ZeroShotDataset):
    def __init__(self, root: str):
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise UserError(f"Dataset folder {root} does not exist; expected layout: {LAYOUT}.")
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise UserError(f"Dataset folder {root} has no class sub-folders; expected layout: {LAYOUT}.")
        self.paths: list[Path] = []
        labels: list[int] = []
        for label, class_dir in enumerate(class_dirs):
            for path in sorted(class_dir.rglob("*")):
                # A link that points nowhere (dangling, or a loop) still names an image: it is listed, fails to
                # load, and is counted and named as skipped like any unreadable file.
                if path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or _broken_link(path)):
                    self.paths.append(path)
                    labels.append(label)
        if not self.paths:
            raise UserError(f"Dataset folder {root} has class sub-folders but no image files; expected layout: {LAYOUT}.")
        classnames = [d.name.replace("_", " ") for d in class_dirs]
        if (folder / "classnames.txt").exists():
            classnames = _read_lines(folder / "classnames.txt")
            if len(classnames) != len(class_dirs):
                raise UserError(
                    f"{folder / 'classnames.txt'} lists {len(classnames)} names but there are {len(class_dirs)} class "
                    "sub-folders; give one name per sub-folder, in sorted sub-folder order."
                )
        templates = DEFAULT_TEMPLATES
        if (folder / "templates.txt").exists():
            templates = _read_lines(folder / "templates.txt")
            bad = [t for t in templates if "{}" not in t]
            if not templates or bad:
                raise UserError(f"Every line of {folder / 'templates.txt'} must contain {{}} where the class name goes (found {bad[:1] or 'no lines'}).")
        self.folder = folder
        super().__init__(f"folder:{folder}", "all", str(folder), classnames, list(templates), labels)

    def load_image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            image.load()
            return image

    def describe(self, index: int) -> str:
        return str(self.paths[index].relative_to(self.folder))
