"""Procedural paired CT phantoms (non-contrast, arterial contrast, labels) for training, demos and tests."""
