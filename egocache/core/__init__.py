"""Mechanisms every part of egocache shares, each written once: atomic file writes, device choice,
declared settings (validation and CLI options), per-segment metrics and safe torch checkpoint I/O.

Nothing here imports the parts (pipeline, cache, student, report, synth); they import from here.
"""
