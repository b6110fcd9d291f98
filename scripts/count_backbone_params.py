"""Recount the image-tower parameters of the open_clip rows of reference/backbone_meta.csv.

Each architecture is built on PyTorch's meta device (no weights, no memory); prints every row whose count
differs from the file and exits 1 if any does.

    python scripts/count_backbone_params.py
"""

from __future__ import annotations

import sys

from lr0fm.models.meta import count_openclip_image_params
from lr0fm.models.registry import entries


def main() -> int:
    differing = 0
    for entry in entries():
        if entry.meta is None or not (entry.spec or "").startswith("openclip:"):
            continue
        arch = entry.spec.removeprefix("openclip:").split("/")[0]
        counted = count_openclip_image_params(arch)
        if counted != entry.meta.image_params:
            differing += 1
            print(f"{entry.name}: {arch} has {counted:,} image-tower parameters, the file says "
                  f"{entry.meta.image_params:,}")
    print(f"{differing} row(s) differ from open_clip's counts")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
