"""Write a copy of a model file with some stored sampler defaults changed (chosen on the tuning split).

    .venv/bin/python scripts/set_sampler.py runs/sd1/model.safetensors runs/sd1/tuned.safetensors wiener_noise=6
Values are parsed as JSON where they can be (numbers, true/false), else kept as text.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from bsgd_cli.checkpoint import load_model, save_model


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    source, target, *pairs = sys.argv[1:]
    loaded = load_model(source)
    changes = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        changes[key] = float(value) if isinstance(getattr(loaded.sampler, key), float) else value
    sampler = replace(loaded.sampler, **changes)
    info = {**loaded.info, "sampler_changed": {**loaded.info.get("sampler_changed", {}), **changes}}
    save_model(Path(target), loaded.model, sampler=sampler, info=info)
    print(f"{target}: {sampler}")


if __name__ == "__main__":
    main()
