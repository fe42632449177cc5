"""The package version, in a module that imports nothing: store and statefile write it into files
without importing the package's ``__init__`` (which exposes the runtime). pyproject.toml reads it
from here (``[tool.setuptools.dynamic]``), so this is the one place it is written."""

__version__ = "0.1.0"
