"""``fastmnist summary MODEL``: the torchinfo-style table of a named model (or of a checkpoint)."""
from __future__ import annotations

import argparse


def add_parser(sub):
    from .. import models

    p = sub.add_parser(
        "summary", help="print a model's layers, output shapes and parameter counts (like torchinfo)",
        description="Print the table of layers, output shapes and parameter counts of a named model "
                    "(built with --option like `fastmnist train`) or of a checkpoint written by "
                    "`fastmnist train`, followed by its default recipe.",
        epilog="examples:\n  fastmnist summary mlp\n  fastmnist summary cnn-scratch --option channels=8,16,32\n"
               "  fastmnist summary runs/cnn/model.npz",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help=", ".join(models.names()) + ", or a model.npz checkpoint")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, as for `fastmnist train` (repeatable)")
    p.add_argument("--recipe", default="default", metavar="NAME", help="recipe to print (default: the write-up's)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import models
    from .train import parse_options

    if args.model.lower().endswith(".npz"):
        if args.option:
            raise ValueError("--option applies to a named model, not to a checkpoint")
        from ..checkpoint import load_checkpoint

        path = Path(args.model)
        if not path.is_file():
            raise ValueError(f"checkpoint {path} does not exist")
        model, info = load_checkpoint(path)
        name = (getattr(model, "spec", None) or {}).get("name", path.name)
        print(f"{name} (checkpoint {path})")
        model.summary()
        recipe = (info.get("meta") or {}).get("recipe")
        if recipe:
            print("trained with: " + ", ".join(f"{k} {v}" for k, v in recipe.items() if k not in ("options",)))
        return 0
    name = models._lookup(args.model)
    options = parse_options(args.option)
    model = models.build(name, seed=0, **options)
    r = models.recipe(name, args.recipe)
    print(f"{name}" + (f" {options}" if options else ""))
    model.summary()
    print(f"{r.line()}\n  ({r.source})")
    return 0
