"""The legacy Completions API adapter (``POST /v1/completions``): service.py, prompts.py,
answer.py, relayed.py."""
