"""DigitalContrast reader-study library: study config, blinded schedules, answer store,
exports and statistics (MRMC, visual grading, Turing test, agreement).

Pure Python (numpy, SQLite, scipy/statsmodels for analysis): nothing here imports ``slicer``,
``qt`` or ``ctk`` at module level, so it runs in a plain venv, a CLI, a notebook and in Slicer.
"""

__version__ = "0.1.0"
