"""How the reading session shows images in an MRML scene, and the audit of what a scene reveals."""
