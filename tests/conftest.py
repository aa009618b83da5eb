"""Test configuration: every test gets its own STUDIO_HOME in a temp dir.

Fixtures live in modules under tests/fixtures/ (one per area) and are loaded here as plugins.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# No test touches the network: hubs are offline, telemetry off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

pytest_plugins = [
    "tests.fixtures.core",
    "tests.fixtures.tiny",
    "tests.fixtures.servers",
    "tests.fixtures.browser",
    "tests.fixtures.models",
    "tests.fixtures.argilla",
]
