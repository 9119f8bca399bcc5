"""Put together one model file from the parts of others (used to assemble the default model).

    .venv/bin/python scripts/combine_models.py --base runs/sd4/model.safetensors \
        --blind-spot runs/bsn/model.safetensors --out runs/v8/model.safetensors mode=fast wiener.noise_scale=6

The base file gives everything (diffusion branch, student, sampler, info); ``--blind-spot`` replaces the
blind-spot branch (weights and config); ``key=value`` pairs change stored sampler defaults as in
scripts/set_sampler.py. The info records where each part came from. ``--info FILE.json`` replaces or adds
info keys (a null value removes the key): what ``bsgd models`` shows about the release.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace
from pathlib import Path

from set_sampler import parse_changes  # scripts/ is on the path when run as a script

from bsgd_cli.checkpoint import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--blind-spot", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--info", type=Path, default=None, help="JSON object of info keys to set (null: remove)")
    parser.add_argument("changes", nargs="*", help="sampler key=value")
    args = parser.parse_args()
    base = load_model(args.base)
    model = copy.deepcopy(base.model)
    info = dict(base.info)
    parts = {"base": {"path": str(base.path), "sha256": base.sha256}}
    if args.blind_spot:
        donor = load_model(args.blind_spot)
        model.config = replace(model.config, blind_spot=donor.model.config.blind_spot)
        model.blind_spot_net = copy.deepcopy(donor.model.blind_spot_net)
        parts["blind_spot"] = {"path": str(donor.path), "sha256": donor.sha256,
                               "finetune": donor.info.get("blind_spot_finetune")}
        info["assembled_from"] = parts
    if args.info is not None:
        for key, value in json.loads(args.info.read_text()).items():
            if value is None:
                info.pop(key, None)
            else:
                info[key] = value
    sampler = parse_changes(base.sampler, args.changes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(args.out, model, sampler=sampler, info=info)
    print(f"{args.out}: {sampler}")


if __name__ == "__main__":
    main()
