"""`tpt stats`: SQL over the `samples` view, shown as a text table or written as CSV / Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tpt.analysis.runs import AnalysisError
from tpt.io.storage import staged_file

WRITERS = {".csv": pacsv.write_csv, ".parquet": pq.write_table}


def run_sql(con, sql: str) -> pa.Table:
    """The result of one SQL statement; a DuckDB error becomes an AnalysisError with DuckDB's message."""
    import duckdb

    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as error:
        raise AnalysisError(f"SQL error: {error}\n(the view is `samples`; columns: {', '.join(_columns(con))})") from None


def _columns(con) -> list[str]:
    return [row[0] for row in con.sql("DESCRIBE samples").fetchall()]


def write_table(table: pa.Table, path: Path) -> None:
    """Write `table` as CSV or Parquet, chosen by the file extension; whole or not at all."""
    writer = WRITERS.get(Path(path).suffix.lower())
    if writer is None:
        raise AnalysisError(f"{path}: unknown output format; use a .csv or .parquet file name")
    with staged_file(path) as staging:
        writer(table, staging)


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """An aligned text table of the first `max_rows` rows, numbers right-aligned."""
    shown = table.slice(0, max_rows)
    columns = [[_cell(value) for value in shown.column(i).to_pylist()] for i in range(shown.num_columns)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type) for f in table.schema]
    widths = [max([len(name), *map(len, cells)]) for name, cells in zip(table.column_names, columns)]
    lines = ["  ".join(_pad(name, width, right) for name, width, right in zip(table.column_names, widths, numeric)).rstrip(),
             "  ".join("-" * width for width in widths)]
    for row in zip(*columns):
        lines.append("  ".join(_pad(cell, width, right) for cell, width, right in zip(row, widths, numeric)).rstrip())
    if table.num_rows > max_rows:
        lines.append(f"... {table.num_rows - max_rows:,} more rows (write them all with --output FILE.csv)")
    lines.append(f"({table.num_rows:,} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(lines)


def _pad(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
