"""Reports from the attempt history, read straight from the store (no API needed): plots and a
summary of a run, CSV / Parquet export of attempts, the best kernels as files.

    .venv/bin/python -m reports --help
"""
