"""Benchmarking: data sets in their official layouts, classical baselines, the runner, submission files.

Heavy optional packages (scikit-image, OpenCV, h5py, bm3d) are imported only when used.
"""

from __future__ import annotations

from bsgd_cli.benchmark.baselines import available_baselines, bm3d_denoise, nlm_denoise
from bsgd_cli.benchmark.datasets import KINDS, Dataset, Sample, load_dataset
from bsgd_cli.benchmark.runner import BenchmarkResult, format_results_table, run_benchmark
from bsgd_cli.benchmark.submission import write_dnd_submission, write_sidd_submission

__all__ = [
    "KINDS",
    "BenchmarkResult",
    "Dataset",
    "Sample",
    "available_baselines",
    "bm3d_denoise",
    "format_results_table",
    "load_dataset",
    "nlm_denoise",
    "run_benchmark",
    "write_dnd_submission",
    "write_sidd_submission",
]
