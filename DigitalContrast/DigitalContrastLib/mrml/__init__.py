"""MRML logic: converts between core objects and MRML nodes, builds layouts, fills tables. Uses only what slicer-core provides (no Qt, no slicer.app)."""
