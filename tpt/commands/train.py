"""Train a model on tpt's shards with Composer: `tpt train YAML [key=value ...]`.

Overrides set any key of the YAML, e.g.
  tpt train composer_yamls/tiny-cpu.yaml max_duration=10ba train_loader.dataset.streams=out/demo/streams.yaml
On several GPUs or nodes, Composer's launcher runs the same file on every device:
  composer -n 8 -m tpt.train composer_yamls/tpt-8b-from-scratch.yaml
See docs/training.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training YAML (see composer_yamls/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="set a key of the YAML (dotted for nested keys; values parse as YAML)")


def main(args: argparse.Namespace) -> int:
    from tpt.train.config import load_train_config
    from tpt.train.trainer import train

    train(load_train_config(args.config, args.overrides))
    return 0
