"""Study files: cases, images, questions, design; schedules and blinding. Needs only the common layer."""
