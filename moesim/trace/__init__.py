"""Routing traces: the Arrow trace format, generators, importers, fitting and statistics."""
