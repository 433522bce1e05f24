"""Answer stores behind one protocol: every answer committed when given, append-only revisions and events, a hash chain."""
