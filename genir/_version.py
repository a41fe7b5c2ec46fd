"""genir's version, in one place: the package metadata, manifests and ``genir --version`` read it."""

__version__ = "0.1.0"
