"""``digital-contrast models``: the installed synthesis models and where they come from."""

from __future__ import annotations

import argparse
import json

NAME = "models"
HELP = "list installed synthesis models (id, version, IFU, folder, checksum verified)"
ORDER = 50
DESCRIPTION = """\
List the models found on the model search path, in priority order: the shipped model_weights/
folder, the per-user folder, then every folder in $DIGITALCONTRAST_MODEL_PATH (os.pathsep-separated).
An earlier folder wins when two hold the same model id; duplicates and invalid cards are reported.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from DigitalContrastLib.models.cards import DEFAULT_MODEL_ID, discover_models

    inventory = discover_models()
    rows = [card.summary(verify=True) for card in inventory.models.values()]
    if args.json:
        print(json.dumps({"default": DEFAULT_MODEL_ID, "models": rows, "duplicates": inventory.duplicates,
                          "invalid": inventory.invalid, "searched": inventory.searched}, indent=2))
        return 0
    if not rows:
        print("no models installed; searched: " + ", ".join(inventory.searched))
    for row in rows:
        default = " (default)" if row["id"] == DEFAULT_MODEL_ID else ""
        verified = "yes" if row["verified"] else f"NO ({row.get('problem', '')})"
        print(f"{row['id']}{default}  version {row['version']}  IFU {row['ifu']}  [{row['source']}] {row['folder']}")
        print(f"    verified: {verified}")
        print(f"    {row['intended_use']}")
    for model_id, paths in inventory.duplicates.items():
        print(f"duplicate id {model_id}: ignored {', '.join(paths)} (an earlier folder on the search path wins)")
    for bad in inventory.invalid:
        print(f"invalid model card {bad['path']}: {bad['problem']}")
    return 0
