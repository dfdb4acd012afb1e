"""Checkout entry point of `nas-retrain` (:mod:`nas.commands.retrain`): the same command without installing."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.commands.retrain import *  # noqa: E402,F401,F403  (tests and scripts reach its functions here)
from nas.commands.retrain import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli())
