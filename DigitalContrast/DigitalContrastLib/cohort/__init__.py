"""Cohort evaluation: synthesis + registration + metrics over a CSV of cases, resumable, with its HTML report and carbon ledger."""
