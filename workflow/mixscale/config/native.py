"""The rule both of mixscale's own models use (``config/gpt2.py``, ``config/bert.py``): a
config is built natively when every field is known and the fields the module cannot compute
have the values it computes; otherwise transformers builds it."""

from __future__ import annotations

from typing import Any

SAVED_KEYS = {"model_type", "architectures", "dtype", "transformers_version"}


def full_native_config(
    fields: dict[str, Any],
    defaults: dict[str, Any],
    native_only: dict[str, Any],
    sizes: tuple[str, ...],
    floats: tuple[str, ...],
) -> dict[str, Any] | None:
    """``defaults`` updated with ``fields``, or None when transformers must build it: an
    unknown key, a value outside ``native_only``, a size that is not an int (None allowed
    where the default is None), a float field that is not a number (transformers words those
    errors)."""
    if any(key not in defaults and key not in SAVED_KEYS for key in fields):
        return None
    config = {**defaults, **{k: v for k, v in fields.items() if k in defaults}}
    if any(config[k] != v for k, v in native_only.items()):
        return None
    for key in sizes:
        value = config[key]
        if value is None and defaults[key] is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return None
    if any(not isinstance(config[k], float | int) for k in floats):
        return None
    return config
