"""Datasources: what the engine's Read operator reads (see :mod:`.datasource` for the call order)."""

from distcore.data._internal.datasource._meta import BlockMetadata, metadata_of, tensor_array
from distcore.data._internal.datasource.datasource import Datasource, ReadTask
from distcore.data._internal.datasource.file_based import FileBasedDatasource, FileReadError
from distcore.data._internal.datasource.file_formats import (
    BinaryDatasource,
    CSVDatasource,
    ImageDatasource,
    JSONDatasource,
    NumpyDatasource,
    TextDatasource,
)
from distcore.data._internal.datasource.memory import BlocksDatasource, RangeDatasource
from distcore.data._internal.datasource.parquet import ParquetDatasource
from distcore.data._internal.datasource.paths import expand_paths

__all__ = [
    "BinaryDatasource", "BlockMetadata", "BlocksDatasource", "CSVDatasource", "Datasource", "FileBasedDatasource",
    "FileReadError", "ImageDatasource", "JSONDatasource", "NumpyDatasource", "ParquetDatasource",
    "RangeDatasource", "ReadTask", "TextDatasource", "expand_paths", "metadata_of", "tensor_array",
]
