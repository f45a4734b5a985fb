"""`python -m local`: run the app on this machine, offline."""

from __future__ import annotations

import sys

from local.cli import main

sys.exit(main())
