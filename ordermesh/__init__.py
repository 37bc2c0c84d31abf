"""ordermesh: a gRPC service mesh for order routing."""

from importlib import metadata

try:
    __version__ = metadata.version("ordermesh")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
