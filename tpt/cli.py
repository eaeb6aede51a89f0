"""The `tpt` command line: one subcommand per module under tpt/commands (or analysis/).

Command modules import their heavy dependencies inside `main`, so `tpt --help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

# name -> module with a docstring (its help), add_arguments(parser) and main(args) -> exit code
COMMANDS = {
    "run": "tpt.commands.run",
    "progress": "tpt.commands.progress",
    "assets": "tpt.commands.assets",
    "label": "tpt.commands.label",
    "classifiers": "tpt.commands.classifiers",
    "train": "tpt.commands.train",
    "streams": "tpt.commands.streams",
    "heldout": "tpt.commands.heldout",
    "export": "tpt.commands.export",
    "experiment": "tpt.commands.experiment",
    "report": "tpt.analysis.commands.report",
    "stats": "tpt.analysis.commands.stats",
    "estimate": "tpt.analysis.commands.estimate",
    "show": "tpt.analysis.commands.show",
    "publish": "tpt.analysis.commands.publish",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpt", description=__import__("tpt").__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        sub = commands.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return parser


def setup_logging(verbose: bool) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # dependency deprecation notices, not the user's concern
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("apache_beam", "urllib3", "httpx", "filelock", "datatrove"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("streaming").setLevel(logging.ERROR)
    # Beam's local job service logs each failed worker bundle; the run's own error (tpt.run.failures) says it once.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:  # everything after `--` goes to the engine (e.g. Beam pipeline options)
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    args.engine_args = extra
    setup_logging(args.verbose)
    try:
        return args.main(args) or 0
    except (ValueError, OSError) as error:  # a bad config (ConfigError is a ValueError), a missing file, an unreachable server, a full disk
        print(f"tpt {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
