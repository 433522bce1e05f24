"""From a non-contrast CT to a synthetic CTA: the input gate, the engine (torch), and the file-to-file API the worker runs. The gate and the dummy engine are numpy-only."""
