"""The chaos suite's directory is importable (its helpers are plain modules)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
