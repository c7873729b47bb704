"""Trace data shipped with moesim: the format doc, generator presets and golden traces."""
