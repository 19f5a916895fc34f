"""chatd: the OpenAI Chat Completions API, served for real."""

__version__ = "0.1.0"
