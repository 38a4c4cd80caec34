"""The score stage and CLIP model loading: shards parts -> signals/clip and signals/embeddings parts."""
