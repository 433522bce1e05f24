"""Statistics over the long table: MRMC (Obuchowski-Rockette with Hillis df), visual grading, Turing test, agreement."""
