"""Prometheus exporter for the 8x8 CPaaS Number Health service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eightbyeight-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
