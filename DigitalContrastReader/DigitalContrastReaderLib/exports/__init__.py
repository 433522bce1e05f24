"""Exports of a study: tidy CSV, iMRMC/JAFROC files, bundles and the HTML report."""
