"""Helpers for testing and benchmarking TinyChat: real nodes as subprocesses."""
