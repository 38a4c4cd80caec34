"""The export stage: kept rows -> corpus/ (Parquet, optionally webdataset tars)."""
