"""The web reading station: ``digital-contrast-reader serve STORE`` (docs/reading-station.md).

A front process (:mod:`.front`: sign-in, admin view, routing of HTTP and WebSocket under one
origin) and one trame-slicer page process per signed-in reader (:mod:`.reader_process`,
:mod:`.reader_app`), which serves the Slicer module's reading flow: the session and form of
``reading/``, the MRML display of ``mrml/``, the store's reading calls with the reader's token.
A front end only: nothing is computed, stored or formatted here.
"""
