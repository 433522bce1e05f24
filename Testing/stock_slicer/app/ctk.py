"""Stand-in for CTK's Python module (nothing of it runs without the Slicer application)."""
