"""The synthesis service: the worker's jobs behind an authenticated HTTP API (``digital-contrast serve``)."""
