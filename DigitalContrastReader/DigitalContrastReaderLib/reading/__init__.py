"""The reader's state machine (next item, submit, resume, washout) over an answer store, the question form, active-time counting and simulated readers."""
