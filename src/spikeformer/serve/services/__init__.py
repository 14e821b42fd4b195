"""Service logic (no HTTP objects here)."""
