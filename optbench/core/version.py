"""optbench's version, read once from its installed metadata (pyproject.toml's `version`), so
the lower layers that record it (summary.json, loggers) need not import the package's top."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("optbench")
except PackageNotFoundError:  # a source checkout on sys.path, never installed
    VERSION = "0+unknown"
