"""A site's own paired scans made into training cases: ``digital-contrast prepare``.

:mod:`.case` prepares one pair (input gate on both scans, registration rigid then B-spline,
quality figures and the verdict, enhancement mask, QC picture, ``case.json`` without patient
identity) into a case folder that training reads; :mod:`.run` does a whole cohort CSV, resumable,
locally or on Dask; :mod:`.report` writes ``report.html``. :mod:`.enhancement`, :mod:`.quality`,
:mod:`.facts` and :mod:`.qc_picture` hold the parts. numpy, SimpleITK and pydicom only (no torch).
"""
