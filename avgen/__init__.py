"""avgen: text-driven two-person audio-visual dialogue synthesis (AV-Flow + TAVID)."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenMP threads that spin while waiting for work hold their cores: on a machine shared
# with other work (or with our own render and encode threads) that made the joint model
# 5x slower (2 threads, load average 21: 83 s spinning, 15 s sleeping). Sleeping threads
# cost little when the machine is idle. Set before torch starts its thread pool; a
# user's own setting wins.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
