"""Data layer: dataset loaders, spike encoders, preprocessing, augmentation and batching.

Sits at the bottom of the package: imports nothing else from spikeformer. Images are ``uint8``
``[N, C, H, W]`` until :class:`Preprocess` makes them float32; encoders return time-first ``[T, B, ...]``.
"""

from .datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_ROOT,
    FASHION_MNIST_ENV,
    IMAGE_EXTENSIONS,
    SPLITS,
    ArrayDataset,
    DatasetNotFoundError,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
)
from .encoders import ENCODERS, SpikeEncoder, direct_encode, encode, latency_encode, poisson_encode
from .idx import read_idx, write_idx
from .loader import iterate_batches, num_batches
from .transforms import Preprocess, random_crop, random_horizontal_flip

__all__ = [
    "DATASETS",
    "ENCODERS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_ROOT",
    "FASHION_MNIST_ENV",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "ArrayDataset",
    "DatasetNotFoundError",
    "Preprocess",
    "SpikeEncoder",
    "direct_encode",
    "encode",
    "iterate_batches",
    "latency_encode",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "num_batches",
    "poisson_encode",
    "random_crop",
    "random_horizontal_flip",
    "read_idx",
    "write_idx",
]
