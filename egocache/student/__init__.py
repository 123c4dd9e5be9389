"""Student models, losses, training stages and evaluation (reads the cache only, never a teacher)."""
