"""Data files shipped with curate (word lists); a package so that they install with it."""
