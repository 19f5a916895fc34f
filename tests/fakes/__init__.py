"""Test doubles for chatd's boundaries: a scripted engine (``engine``) and one fake
OpenAI-compatible upstream (``upstream``, shared with benchmarks/relay_servers.py)."""
