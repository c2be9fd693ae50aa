"""miltrd: a configuration-driven mail filter (milter) daemon."""

__version__ = "0.1.0"
