"""`python -m exporter.simulator`: run the 8x8 API simulator standalone."""

import sys

from exporter.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m exporter.simulator"))
