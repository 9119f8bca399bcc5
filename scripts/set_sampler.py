"""Write a copy of a model file with some stored sampler defaults changed (chosen on the tuning split).

    .venv/bin/python scripts/set_sampler.py runs/sd1/model.safetensors runs/sd1/tuned.safetensors wiener.noise_scale=6
Keys are SamplerConfig fields, ``wiener.FIELD`` for the Wiener settings (WienerConfig), or the old flat
names (``wiener_noise=6``). Values are parsed as JSON where they can be (numbers, true/false), else kept as text.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bsgd_cli.checkpoint import load_model, save_model
from bsgd_cli.config import LEGACY_WIENER_KEYS, SamplerConfig


def _value(text: str, current: Any) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return float(value) if isinstance(current, float) else value


def parse_changes(sampler: SamplerConfig, pairs: list[str]) -> SamplerConfig:
    """``sampler`` with ``key=value`` changes (see the module docstring)."""
    top: dict[str, Any] = {}
    wiener: dict[str, Any] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        field = LEGACY_WIENER_KEYS.get(key) or (key.removeprefix("wiener.") if key.startswith("wiener.") else None)
        if field is not None:
            wiener[field] = _value(text, getattr(sampler.wiener, field))
        else:
            top[key] = _value(text, getattr(sampler, key))
    return replace(sampler, **top, wiener=replace(sampler.wiener, **wiener))


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    source, target, *pairs = sys.argv[1:]
    loaded = load_model(source)
    sampler = parse_changes(loaded.sampler, pairs)
    changes = {pair.partition("=")[0]: pair.partition("=")[2] for pair in pairs}
    info = {**loaded.info, "sampler_changed": {**loaded.info.get("sampler_changed", {}), **changes}}
    save_model(Path(target), loaded.model, sampler=sampler, info=info)
    print(f"{target}: {sampler}")


if __name__ == "__main__":
    main()
