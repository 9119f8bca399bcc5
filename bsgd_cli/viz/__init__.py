"""Pictures for people: before/after views, training curves, demo samples."""
