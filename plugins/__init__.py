"""miltrd's built-in plugins, one module each, installed as miltrd.plugins.<name>.

Each module exposes its plugin class as ``PLUGIN`` and imports only
``miltrd.api`` (and its own third-party libraries).
"""
