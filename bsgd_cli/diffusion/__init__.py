"""Noise schedule, guidance wrapper and samplers (plain functions over model callables)."""
