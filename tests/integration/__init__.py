"""Integration tests: a real local Ray cluster, shared by the session."""
