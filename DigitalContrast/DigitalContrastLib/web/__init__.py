"""The browser review page (trame-slicer): upload, synthesize on the service, review in linked slice views."""
