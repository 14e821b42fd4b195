#!/usr/bin/env python3
"""The path the operations runbook names: runs ``spikeformer doctor`` (health, models, backends and telemetry,
memory, database, disk) and exits non-zero when something is wrong. Arguments are passed through
(e.g. ``--url http://spikeformer-api:8000 --json``)."""

import sys

from spikeformer.cli import app

if __name__ == "__main__":
    sys.exit(app(["doctor", *sys.argv[1:]], standalone_mode=True))
