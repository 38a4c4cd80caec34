"""The filter stage: per-step pass/fail of every pair -> decisions.parquet; the funnel over it."""
