"""Estimate what TPT costs for a config's full corpus: thinking (output) tokens, training tokens
and GPU-hours, projected from a sample run.

  tpt estimate configs/demo.yaml --sample 50 --tokens-per-second 6400
  tpt estimate configs/big.yaml --from out/sample-run --tokens-per-second 6400 --train-tokens-per-second 47500

--sample N runs the config's pipeline over the first N documents of each source (in a
temporary folder, or --workdir); --from uses a finished sample run instead. Without
--tokens-per-second the rate measured in the sample run is used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML of the full corpus")
    origin = parser.add_mutually_exclusive_group(required=True)
    origin.add_argument("--sample", type=int, metavar="N", help="run the pipeline over the first N documents of each source")
    origin.add_argument("--from", dest="sample_run", metavar="OUT", help="a finished sample run's output folder")
    parser.add_argument("--tokens-per-second", type=float,
                        help="thinking-generation output tokens/s per GPU (default: measured in the sample run)")
    parser.add_argument("--train-tokens-per-second", type=float, help="training tokens/s per GPU, for training GPU-hours")
    parser.add_argument("--workdir", help="where --sample writes its run (default: a temporary folder, removed after)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes of the sample run (default: 2)")
    parser.add_argument("--json", dest="json_out", help="also write the estimate as JSON to this file")


def main(args: argparse.Namespace) -> int:
    from tpt.analysis.estimate import count_documents, project
    from tpt.analysis.runs import AnalysisError, load_run
    from tpt.config import load_config
    from tpt.io.storage import staged_file

    config = load_config(args.config)
    for rate in (args.tokens_per_second, args.train_tokens_per_second):
        if rate is not None and rate <= 0:
            raise AnalysisError(f"tokens per second must be positive, got {rate:g}")
    corpus = {source.name: count_documents(source) for source in config.sources}
    if args.sample_run:
        result = project(config, load_run(args.sample_run), corpus, args.tokens_per_second, args.train_tokens_per_second)
    else:
        if args.sample <= 0:
            raise AnalysisError(f"--sample must be positive, got {args.sample}")
        with tempfile.TemporaryDirectory(prefix="tpt-estimate-") as scratch:
            result = _project_sample(config, args, Path(args.workdir or scratch), corpus)
    print(render(result))
    if args.json_out:
        with staged_file(args.json_out) as staging:
            Path(staging).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return 0


def _project_sample(config, args: argparse.Namespace, folder: Path, corpus: dict) -> dict:
    from tpt.analysis.estimate import project, write_sample
    from tpt.analysis.runs import load_run
    from tpt.run import execute

    (folder / "documents").mkdir(parents=True, exist_ok=True)
    sample_config, read_rejects = write_sample(config, args.sample, folder / "documents")
    sample_config = sample_config.with_output_dir(str(folder / "run"))
    execute(sample_config, workers=args.workers)
    return project(config, load_run(folder / "run"), corpus, args.tokens_per_second, args.train_tokens_per_second, read_rejects)


def render(result: dict) -> str:
    from tpt.analysis.plots import compact

    def span(values: list[float]) -> str:
        low, mid, high = values
        return f"{compact(mid)} ({compact(low)}–{compact(high)})"

    lines = [f"tpt estimate from {result['sample_run']}", "",
             f"  {'source':<16}{'documents':>12}{'kept':>8}{'thinking tokens (95%)':>30}{'training tokens (95%)':>30}"]
    for name, source in result["sources"].items():
        lines.append(f"  {name:<16}{source['documents']:>12,}{100 * source['kept_share']:>7.1f}%"
                     f"{span(source['thinking_tokens']):>30}{span(source['training_tokens']):>30}")
    totals = result["totals"]
    lines.append(f"  {'total':<16}{totals['documents']:>12,}{'':>8}"
                 f"{span(totals['thinking_tokens']):>30}{span(totals['training_tokens']):>30}")
    if not totals["thinking_tokens"][1]:
        lines.append("\n  the sample run generated no thinking: add a `generate:` section to the config to estimate it")
    elif "budgets" in result:
        lines += ["", f"  {'thinking budget':<28}{'sample samples':>16}{'thinking tokens':>30}"]
        for budget in result["budgets"]:
            name = f"{budget['max_new_tokens']:,} tokens × {budget['samples_per_document']}"
            lines.append(f"  {name:<28}{budget['sample_samples']:>16,}{compact(budget['thinking_tokens']):>30}")
        short = sum(budget["cut_shorter"] for budget in result["budgets"])
        if short:
            lines.append(f"  {short:,} samples ran out of a smaller budget in the sample run than the config gives them: "
                         "the estimate may be too low")
    if "deduplication" in result:
        saved = result["deduplication"]
        lines.append(f"\n  deduplication: {compact(saved['duplicates'])} documents are copies, never sent to the teacher; "
                     f"it saves {span(saved['thinking_tokens'])} thinking and {span(saved['prompt_tokens'])} prompt tokens")
        if saved["generation"]["gpu_hours"] is not None:
            low, mid, high = saved["generation"]["gpu_hours"]
            lines.append(f"  and {_hours(mid)} ({_hours(low)}–{_hours(high)}) generation GPU-hours")
    for stage in ("generation", "training"):
        if stage in result:
            cost = result[stage]
            if cost["gpu_hours"] is None:
                lines.append(f"\n  {stage}: no rate (pass --tokens-per-second; the sample run measured no thinking throughput)")
            else:
                low, mid, high = cost["gpu_hours"]
                lines.append(f"\n  {stage} GPU-hours at {cost['tokens_per_second_per_gpu']:,.0f} tokens/s per GPU ({cost['rate']}): "
                             f"{_hours(mid)} ({_hours(low)}–{_hours(high)})")
    return "\n".join(lines)


def _hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
