"""Files to validated uint8 pixels: input formats, preprocessing, fetch, splits. No database code."""

from signdb.data.decoding import load_image_file
from signdb.data.fetch import REGISTRY, RemoteDataset, UnpinnedChecksumWarning, fetch_dataset
from signdb.data.formats import Format, Input, count_inputs, iter_samples, open_input
from signdb.data.formats.archive import safe_extract_zip
from signdb.data.labels import MAX_LABEL, parse_label
from signdb.data.preprocess import (
    MAX_IMAGE_PIXELS,
    Preprocessing,
    decode_image,
    pixels_sha256,
    preprocess_array,
    preprocess_image,
)
from signdb.data.samples import Rejection, Sample

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_LABEL",
    "REGISTRY",
    "Format",
    "Input",
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
    "open_input",
    "parse_label",
    "pixels_sha256",
    "preprocess_array",
    "preprocess_image",
    "safe_extract_zip",
]
