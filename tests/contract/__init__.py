"""ChunkLog contract tests, run against every backend (``ids=["memory", "redis"]``)."""
