"""Keras importer, moving into a package of modules: for now all of it is in ``converter.py``.

This package *is* that module (it replaces itself in ``sys.modules``), so every name, and every
attribute the tests set (``_MAX_*``, ``_read_container``), is the module's own, as before the move.
"""

import sys

from . import converter

sys.modules[__name__] = converter
