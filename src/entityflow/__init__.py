"""entityflow: which entities each publication talks about most, and how that changes."""

__version__ = "0.1.0"
