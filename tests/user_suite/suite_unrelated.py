"""A suite that never uses cloaca: the plugin, loaded anyway, must not import cloaca nor get
in the way. Run by test_testing_plugin.py as `test_unrelated.py`."""

import sys


def test_cloaca_is_not_imported_by_the_plugin():
    assert "cloaca_pytest" in sys.modules  # the plugin was loaded...
    assert "cloaca" not in sys.modules  # ...and imported nothing of cloaca
