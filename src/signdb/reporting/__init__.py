"""Reporting: static, offline HTML pages about runs and sweeps."""

from signdb.reporting.service import GALLERY_LIMIT, write_report
from signdb.reporting.sweep import write_sweep_report

__all__ = ["GALLERY_LIMIT", "write_report", "write_sweep_report"]
