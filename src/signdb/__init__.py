"""signdb: a SQL-first home for image-classification experiments."""

from signdb.errors import SignDBError

__version__ = "0.1.0"

__all__ = ["SignDBError", "__version__"]
