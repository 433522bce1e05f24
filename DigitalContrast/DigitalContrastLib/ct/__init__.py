"""CT volumes and their files: CTVolume (int16 HU [z, y, x] + LPS geometry), reading and writing NRRD/NIfTI/MHA/DICOM, synthetic DICOM export, display presets, PNG rendering, label codes, masks."""
