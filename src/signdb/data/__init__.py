"""Files to validated uint8 pixels: readers, preprocessing, fetch, splits. No database code."""

from signdb.data.archives import safe_extract_zip
from signdb.data.fetch import REGISTRY, RemoteDataset, UnpinnedChecksumWarning, fetch_dataset
from signdb.data.labels import MAX_LABEL, parse_label
from signdb.data.preprocess import (
    MAX_IMAGE_PIXELS,
    Preprocessing,
    decode_image,
    pixels_sha256,
    preprocess_array,
    preprocess_image,
)
from signdb.data.readers import (
    Rejection,
    Sample,
    count_inputs,
    iter_samples,
    load_image_file,
)

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_LABEL",
    "REGISTRY",
    "Preprocessing",
    "Rejection",
    "RemoteDataset",
    "Sample",
    "UnpinnedChecksumWarning",
    "count_inputs",
    "decode_image",
    "fetch_dataset",
    "iter_samples",
    "load_image_file",
    "parse_label",
    "pixels_sha256",
    "preprocess_array",
    "preprocess_image",
    "safe_extract_zip",
]
