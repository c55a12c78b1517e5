"""Reporting: static, offline HTML pages about runs."""

from signdb.reporting.service import GALLERY_LIMIT, write_report

__all__ = ["GALLERY_LIMIT", "write_report"]
