"""Readers for recording formats (NWB)."""
