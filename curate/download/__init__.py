"""The download stage: pairs parts -> shards parts (images fetched, resized and hashed)."""
