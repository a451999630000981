"""clrk: a runtime for untrusted LLM agents."""

__version__ = "0.1.0"
