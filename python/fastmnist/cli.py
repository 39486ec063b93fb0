"""The ``fastmnist`` command line. Each subcommand lives in ``fastmnist/commands/<name>.py`` and
defines ``add_parser(subparsers)`` (which must set ``func``) so that modules can be added without
touching this file."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastmnist",
        description="Train and study the classic MNIST models on the CPU with fast C++ kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "threads", None) is not None:  # 0 or less is refused, not taken as "all cores"
            from . import set_num_threads

            set_num_threads(args.threads)
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"fastmnist {args.command}: error: {e}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
