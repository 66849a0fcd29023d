"""Unit tests: no Ray, no services; milliseconds each."""
