"""One exception tree for everything signdb reports to a person.

Every message names the bad value and says how to fix it; the CLI prints it on
one line and exits 1.

    SignDBError
    ├── ConfigError              bad --database-url, data home, environment
    ├── DatabaseError            the server refused a statement
    │   ├── DatabaseUnavailable  the server went away (a run retries these for a while)
    │   ├── EmbeddedServerError  the embedded PostgreSQL could not start
    │   ├── PermissionDenied     the role may not do this (the analyst role writes nothing)
    │   ├── SchemaOutOfDate      run `signdb db upgrade`
    │   └── StandbyBehind        a read standby has not replayed what a run must read
    ├── InputError               a user-supplied value is wrong
    │   ├── NotFound             no such dataset / run / path
    │   │   └── ModelNotFound    no model alias or run-<id> by that name (a 404 when served)
    │   ├── InUse                still needed: a running run, a dataset with runs
    │   ├── InvalidArgument      a flag value out of range
    │   ├── ImageError           one image file cannot be used
    │   │   └── DecompressionBomb
    │   ├── ArrayError           an X.npy / Y.npy problem
    │   ├── UnsafeArchive        an archive member escapes its folder (zip/tar-slip)
    │   ├── LabelError           a label that is not valid for the dataset
    │   ├── ModelNotServable     the run has no final weights and no stored ONNX model
    │   └── TensorError          an inference request's tensor: shape, datatype, size, encoding
    ├── FetchError               download or checksum failure
    ├── RunClosed                a call on a run that has already ended
    ├── SweepError               a sweep cannot go on (no sweep tables, a lost trial)
    └── TrainingError            a run failed while training
        ├── RunInterrupted       SIGINT/SIGTERM stopped a run
        └── RankFailed           a process of a distributed run died or failed
"""

from __future__ import annotations


class SignDBError(Exception):
    """Root of every error signdb raises on purpose; its message names the problem and the fix.

    >>> import signdb
    >>> try:
    ...     signdb.connect("mysql://localhost/x")
    ... except signdb.SignDBError as e:
    ...     print(e)  # doctest: +ELLIPSIS
    signdb needs PostgreSQL, got a 'mysql' URL (mysql://localhost/x); use postgresql://...
    """


class ConfigError(SignDBError):
    pass


class DatabaseError(SignDBError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


class EmbeddedServerError(DatabaseError):
    pass


class PermissionDenied(DatabaseError):
    pass


class SchemaOutOfDate(DatabaseError):
    pass


class StandbyBehind(DatabaseError):
    """A hot standby named for reads had not replayed a run's split assignment in time."""


class InputError(SignDBError):
    pass


class NotFound(InputError):
    pass


class InvalidArgument(InputError):
    pass


class InUse(InputError):
    pass


class ImageError(InputError):
    """One image cannot be used; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DecompressionBomb(ImageError):
    pass


class ArrayError(InputError):
    pass


class UnsafeArchive(InputError):
    pass


class LabelError(InputError):
    pass


class ModelNotFound(NotFound):
    pass


class ModelNotServable(InputError):
    pass


class TensorError(InputError):
    pass


class FetchError(SignDBError):
    pass


class RunClosed(SignDBError):
    pass


class SweepError(SignDBError):
    pass


class TrainingError(SignDBError):
    pass


class RunInterrupted(TrainingError):
    """SIGINT or SIGTERM arrived while a run was open; the run is stored ``interrupted``."""


class RankFailed(TrainingError):
    """A rank of a distributed run died or raised; the run is stored ``failed`` naming it."""
