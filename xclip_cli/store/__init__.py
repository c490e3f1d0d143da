"""State on disk: atomic writes, locks, append-only tables."""
