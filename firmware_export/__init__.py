"""The C99 runtime that ``edgernn export`` copies into every firmware folder.

This folder is the top-level ``firmware_export/`` of the source tree; the wheel installs it as the
package ``edgernn.firmware_export`` (``package-dir`` in pyproject.toml), so an installed edgernn
finds its C sources with ``importlib.resources``. It holds no Python code: see README.md here.
"""
