"""Throughput tables: the recipe's fps per batch size (synthetic) or the real job (dataset), for
any model packages side by side. ``run.bench`` measures, ``table`` prints and plots."""

from spanqa.bench.results import BenchReport, DatasetResult, ModelInfo, SyntheticResult
from spanqa.bench.run import bench
from spanqa.bench.table import footer_lines, format_table, header_lines, plot, row_line

__all__ = [
    "BenchReport",
    "DatasetResult",
    "ModelInfo",
    "SyntheticResult",
    "bench",
    "footer_lines",
    "format_table",
    "header_lines",
    "plot",
    "row_line",
]
