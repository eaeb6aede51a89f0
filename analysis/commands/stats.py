"""Query run outputs with SQL (DuckDB): the view `samples` holds every manifest row of every run
and source, plus the column `run`. Without --sql, print the per-source and per-class overview.

  tpt stats out/demo
  tpt stats out/demo --sql "SELECT domain, avg(thinking_tokens) FROM samples GROUP BY ALL ORDER BY 2 DESC"
  tpt stats out/a out/b --sql "SELECT * FROM samples WHERE finish_reason = 'length'" --output long.parquet
"""

from __future__ import annotations

import argparse

OVERVIEW_COLUMNS = ("class", "samples", "thinking_samples", "thinking_mean", "thinking_median", "thinking_p90",
                    "training_tokens", "training_share", "upsampling")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="OUT", help="run output folders or URLs (gs://...)")
    parser.add_argument("--sql", help="a query over the view `samples`")
    parser.add_argument("--output", help="write the query result to FILE.csv or FILE.parquet instead of printing it")
    parser.add_argument("--max-rows", type=int, default=50, help="rows to print (default: 50)")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")


def main(args: argparse.Namespace) -> int:
    from tpt.analysis.query import format_table, run_sql, write_table
    from tpt.analysis.runs import AnalysisError, connect, load_runs

    con = connect(load_runs(args.runs), args.threads)
    if args.sql is None:
        if args.output:
            raise AnalysisError("--output needs --sql (the overview is printed only; `tpt report` writes its tables)")
        from tpt.analysis.stats import analyse

        result = analyse(con)
        for title, rows in (("source", result["sources"]), *result["axes"].items()):
            print(f"\nby {title}\n" + format_table(overview(title, rows), args.max_rows))
        return 0
    table = run_sql(con, args.sql)
    if args.output:
        write_table(table, args.output)
        print(f"tpt stats: {table.num_rows:,} rows -> {args.output}")
    else:
        print(format_table(table, args.max_rows))
    return 0


def overview(title: str, rows: list[dict]):
    """The overview columns of one axis's class rows, the class column named after the axis."""
    import pyarrow as pa

    if not rows:
        return pa.table({title: pa.array([], pa.string())})
    table = pa.Table.from_pylist([{key: row[key] for key in OVERVIEW_COLUMNS} for row in rows])
    return table.rename_columns([title, *table.column_names[1:]])
