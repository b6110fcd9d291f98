"""Reports from the results database: tables, figures, Markdown/CSV/LaTeX and one self-contained HTML file.

Reads stored predictions only; never loads a model. See `build_report`.
"""

from .build import DEFAULT_OUT, REPORT_FORMATS, ReportResult, build_report, parse_formats
from .collect import Collected, DatasetRun, collect
from .compute import DEFAULT_WEIGHT, ReportTables, compute
from .weights import fit_weights, load_table, write_weights

__all__ = [
    "DEFAULT_OUT", "DEFAULT_WEIGHT", "REPORT_FORMATS", "Collected", "DatasetRun", "ReportResult", "ReportTables",
    "build_report", "collect", "compute", "fit_weights", "load_table", "parse_formats", "write_weights",
]
