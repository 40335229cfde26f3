"""Datasinks: writing a dataset's blocks (one file per block, atomic)."""

from distcore.data._internal.datasink.datasink import (
    CSVDatasink,
    Datasink,
    FileDatasink,
    JSONDatasink,
    NumpyDatasink,
    ParquetDatasink,
    WriteContext,
    WriteResult,
)
from distcore.data._internal.datasink.write import sink_for, write_blocks, write_dataset

__all__ = [
    "CSVDatasink", "Datasink", "FileDatasink", "JSONDatasink", "NumpyDatasink", "ParquetDatasink", "WriteContext",
    "WriteResult", "sink_for", "write_blocks", "write_dataset",
]
