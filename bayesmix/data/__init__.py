"""The data layer: a formula and a data source -> :class:`~bayesmix.data.design.Design`.

Rows in memory (pandas) or per-group sufficient statistics (dask and Parquet) stand behind a
design; both answer the questions the backends ask (cross-products, moments, the
random-effects layout), and only rows answer ``rows``.
"""
