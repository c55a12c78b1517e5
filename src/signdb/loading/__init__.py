"""Loading: any supported input into a dataset, in transactions that lose nothing."""

from signdb.loading.service import LOAD_BATCH, LoadResult, load_dataset, load_samples

__all__ = ["LOAD_BATCH", "LoadResult", "load_dataset", "load_samples"]
