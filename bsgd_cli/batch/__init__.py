"""Folder denoising: discovery, output names, workers, atomic writes, per-file results."""
