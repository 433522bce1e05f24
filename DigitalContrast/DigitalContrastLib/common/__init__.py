"""Shared plumbing: errors and exit codes, atomic writes, checksums, progress, HTML reports, background jobs, dependency checks. Imports nothing of the project."""
