"""Suite-wide settings.

With ``EDGERNN_NO_SKIPS=1`` (set by tools/test.sh, so in CI) a run that skipped any test fails:
the frameworks and compilers the tests need are installed there, so a skip means a missing
install step, and a skipped test must never be counted as passing.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# The ahead-of-time step module (edgernn.kernels.aot) that a test's warmup builds goes to a
# directory of this run's own, never to the user's ~/.cache/edgernn.
_OWN_AOT_DIR = None
if "EDGERNN_AOT_DIR" not in os.environ:
    _OWN_AOT_DIR = os.environ["EDGERNN_AOT_DIR"] = tempfile.mkdtemp(prefix="edgernn-test-aot-")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_AOT_DIR is not None:
        shutil.rmtree(_OWN_AOT_DIR, ignore_errors=True)
    if os.environ.get("EDGERNN_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"EDGERNN_NO_SKIPS=1: {len(skipped)} test(s) skipped; every test must run here", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
