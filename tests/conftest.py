"""Shared test settings."""

from hypothesis import settings

# The machine is shared and noisy: a slow example is not a failure.
settings.register_profile("miltrd", deadline=None)
settings.load_profile("miltrd")
