"""tpt: the open data engine for Thinking-augmented Pre-Training (arXiv 2509.20186)."""

__version__ = "0.1.0"
