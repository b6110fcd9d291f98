"""Decide once whether the Hugging Face hub can be reached, so that a missing download fails at once.

huggingface_hub retries an unreachable host for about a minute before giving up; when we already know
the hub is out of reach we switch it to offline mode, and a file that is not cached fails immediately.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub's host resolves and accepts a TCP connection within `timeout` seconds."""
    if offline_requested():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_mode():
    """Yields True when downloads may be attempted; otherwise holds huggingface_hub in offline mode."""
    online = hub_reachable()
    if online:
        yield True
        return
    import huggingface_hub.constants as constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        constants.HF_HUB_OFFLINE = previous


LOCAL_WEIGHTS = "pass a local weights file with --weights FILE (or a local folder for hf: models)"


def unreachable_message(spec: str, local: str = LOCAL_WEIGHTS) -> str:
    reason = "offline mode is on (HF_HUB_OFFLINE)" if offline_requested() else "the Hugging Face hub cannot be reached"
    return (
        f"{spec} could not be loaded: its files are not in the local cache and {reason}; run once with network access to cache them, "
        f"or {local}."
    )


def load_failure(spec: str, online: bool, error: Exception, local: str = LOCAL_WEIGHTS) -> "UserError":
    """The one sentence for a model whose files could not be had; `local` names the offline alternative."""
    from ..errors import UserError

    if not online:
        return UserError(unreachable_message(spec, local))
    first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    alternative = "a local weights file" if local == LOCAL_WEIGHTS else "a local folder"
    return UserError(f"{spec} could not be loaded from the hub ({first_line}); check the name, or pass {alternative}.")


NO_CONFIG = "has no readable config.json; save the model there with save_pretrained()."
NO_WEIGHTS = "lacks model weights or tokenizer files; save both there with save_pretrained()."
# torch's weights-only unpickler refused the file: loading it any other way could run code.
PICKLE_REFUSED = (
    "{name} holds pickled PyTorch weights (pytorch_model.bin) that lr0fm refuses to load, because unpickling "
    "them could run code; if you trust their source, convert them once to safetensors in the same folder with "
    "python -c \"import torch; from safetensors.torch import save_file; "
    "state = torch.load('{name}/pytorch_model.bin', weights_only=False); "
    "save_file({{k: v.clone().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}}, "
    "'{name}/model.safetensors', metadata={{'format': 'pt'}})\" and delete pytorch_model.bin."
)


@dataclass(frozen=True)
class PretrainedSource:
    """Where a hf: model's files come from: a folder saved with save_pretrained, or a hub id."""

    name: str
    source: str  # what from_pretrained gets
    is_folder: bool
    online: bool

    @property
    def spec(self) -> str:
        return f"hf:{self.name}"

    @property
    def local_only(self) -> bool:
        return self.is_folder or not self.online

    def load(self, loader: Callable, missing: str, **kwargs):
        """`loader(source, local_files_only=..., **kwargs)`; a failure becomes one sentence: for a folder, the
        folder `missing` (NO_CONFIG, NO_WEIGHTS), for a hub id, why the files could not be had."""
        from ..errors import UserError

        try:
            return loader(self.source, local_files_only=self.local_only, **kwargs)
        except pickle.UnpicklingError:
            raise UserError(PICKLE_REFUSED.format(name=self.name)) from None
        except (OSError, ValueError) as error:
            if self.is_folder:
                raise UserError(f"{self.name} {missing}") from error
            raise load_failure(self.spec, self.online, error) from error


@contextlib.contextmanager
def pretrained_source(name: str) -> Iterator[PretrainedSource]:
    """The source of hf:NAME, with the hub held offline (fail fast) while loading when it is out of reach."""
    from ..errors import UserError

    local = Path(name).expanduser()
    if local.exists() and not local.is_dir():
        raise UserError(f"{name} is a file; hf: models need a folder saved with save_pretrained (config.json and weights).")
    with hub_mode() as online:
        yield PretrainedSource(name, str(local) if local.is_dir() else name, local.is_dir(), online)
