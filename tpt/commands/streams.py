"""Print a run's `streams:` block for other trainers (llm-foundry, ...): `tpt streams OUT [--remote URL]`.

OUT/streams.yaml names the shards relative to OUT, which `tpt train` resolves;
other trainers take paths as written, so this prints them absolute, or under
the URL the run folder was uploaded to (streaming then caches them locally):
  tpt streams out/demo                                    # local: /abs/path/out/demo/mds/<source>
  tpt streams out/demo --remote gs://bucket/runs/demo     # remote: gs://bucket/runs/demo/mds/<source>
Paste the output under train_loader.dataset in the trainer's YAML.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="a finished run's output folder (OUT), local or a URL")
    parser.add_argument("--remote", help="the URL OUT was copied to: each stream reads its shards from URL/mds/<source>")


def main(args: argparse.Namespace) -> int:
    import yaml

    from tpt.io.output import OutputLayout
    from tpt.train.streams import parse_streams

    layout = OutputLayout(args.output)
    where = layout.url_of(layout.streams)
    if not layout.exists(layout.streams):
        raise FileNotFoundError(f"{where}: no streams file (is {args.output} the output folder of a finished `tpt run`?)")
    streams = parse_streams(layout.read_text(layout.streams), where, folder=layout.root if layout.is_local else None)
    remote = args.remote or (None if layout.is_local else layout.url)  # a URL output is its own remote
    if remote:
        streams = {name: {"remote": f"{remote.rstrip('/')}/{layout.mds}/{name}",
                          **{key: value for key, value in stream.items() if key not in ("local", "remote")}}
                   for name, stream in streams.items()}
    print(yaml.safe_dump({"streams": streams}, sort_keys=False), end="")
    return 0
