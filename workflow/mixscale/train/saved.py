"""Model folders as transformers' ``save_pretrained`` writes them, for mixscale's own GPT-2
and BERT: ``config.json`` and ``model.safetensors`` written byte for byte as transformers
would, and read back as JSON and safetensors (no code runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def save_folder(
    folder: Path,
    config: dict[str, Any],
    model: torch.nn.Module,
    tied: set[str],
    transformers_version: str,
) -> dict[str, Any]:
    """config.json (the full config, sorted, as save_pretrained writes it) and
    model.safetensors without the ``tied`` entries (transformers ties them again on load).
    Returns the config written."""
    from safetensors.torch import save_file

    written = {**config, "dtype": "float32", "transformers_version": transformers_version}
    (folder / "config.json").write_text(json.dumps(dict(sorted(written.items())), indent=2) + "\n")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return written


def saved_native_config(
    folder: Path, model_type: str, native: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """The config of a saved ``model_type`` folder that ``native`` accepts, or None (a folder
    for transformers to load: another type, dtype or config, or no safetensors file)."""
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("model_type") != model_type:
        return None
    if saved.get("dtype", "float32") != "float32" or not (folder / "model.safetensors").is_file():
        return None
    try:
        return native(saved)
    except ValueError:
        return None


def load_weights(model: torch.nn.Module, folder: Path, tied: set[str]) -> bool:
    """model.safetensors into ``model``; False when its entries are not exactly the model's
    (apart from the ``tied`` ones)."""
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    return not unexpected and not set(missing) - tied
