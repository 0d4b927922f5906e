"""Guarded promotion of a sandbox change into the real tree."""
