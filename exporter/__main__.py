"""`python -m exporter` does what the `eightbyeight-exporter` console script does."""

import sys

from exporter.cli.main import main

sys.exit(main())
