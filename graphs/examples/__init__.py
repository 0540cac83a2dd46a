"""Example graphs shipped with the package (importable from Serve configs anywhere)."""
