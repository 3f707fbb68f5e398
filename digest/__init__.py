"""Daily Papers: arXiv keyword digests by mail and a published README."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daily-papers-digest")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
