"""Nearest-neighbour search over a run's CLIP embeddings (`fairsift search`): a faiss index built once per run."""
