"""signdb: a SQL-first home for image-classification experiments."""

from signdb._version import __version__
from signdb.errors import SignDBError

__all__ = ["SignDBError", "__version__"]
