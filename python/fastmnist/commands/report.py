"""``fastmnist report RUN_DIR``: one self-contained HTML page (and report.md) for a run directory."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("report", help="write one self-contained HTML report (and report.md) for a run",
                       description="Build one self-contained HTML page for a train, compare or logreg run "
                                   "directory: settings, results, the classification report, the "
                                   "per-epoch history and every figure (drawn first when RUN_DIR/figures "
                                   "is empty), embedded; plus a Markdown summary beside it.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html); the .md goes beside it")
    p.add_argument("--redraw", action="store_true", help="redraw the figures even if RUN_DIR/figures has some")
    p.add_argument("--no-figures", action="store_true", help="do not draw figures (embed those already there)")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..report import build_report

    if args.redraw and args.no_figures:
        raise ValueError("--redraw and --no-figures exclude each other")
    if args.redraw:
        from ..plots import write_run_figures

        if not Path(args.run_dir).is_dir():
            raise ValueError(f"run directory {args.run_dir} does not exist")
        write_run_figures(args.run_dir)
    out = build_report(args.run_dir, args.out, figures=not args.no_figures, title=args.title)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
