"""The installed commands (``nas-derive``, ``nas-retrain``, ``nas-lookup``, ``nas-compare``,
``nas-bench``, ``nas-export``, ``nas-random-search``; ``nas-search`` is :mod:`nas.cli`). Each module has ``get_args_parser()``, a
``run(args)`` that raises :class:`~nas.errors.NasError` on bad input, and ``main(args)`` /
``cli(argv)`` that turn such an error into one line on stderr and exit code 2. In a checkout
that is not installed, ``python -m nas.commands.<module>`` runs the same command; the scripts in
``tools/`` are experiments, not commands."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional, Tuple, Type

from ..errors import NasError


def guarded(prog: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace,
            also: Tuple[Type[BaseException], ...] = ()) -> int:
    """``run(args)``, with a user error (a NasError, or one of ``also``: e.g. an unreadable
    input file) printed as ``prog: error: ...`` (exit 2) and SIGINT or SIGTERM as one line
    saying what the run left (exit 130 or 143): never a traceback for something the user can fix."""
    from ..engine.signals import as_interrupted, raise_on_signals
    with raise_on_signals():
        try:
            return run(args)
        except (NasError, *also) as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            stop = as_interrupted(e)
            print(f"{prog}: {stop.note or f'interrupted by {stop.name}'}", file=sys.stderr)
            return stop.exit_code


def entry(module: str, argv: Optional[List[str]] = None, intermixed: bool = False) -> int:
    """Parse ``argv`` with the module's parser and run its ``main``; a closed stdout
    (``... | head``) ends the process quietly, as for any Unix tool."""
    import importlib

    from ..utils.pipes import exit_quietly_on_closed_pipe
    exit_quietly_on_closed_pipe()
    mod = importlib.import_module(f"nas.commands.{module}")
    parser = mod.get_args_parser()
    args = parser.parse_intermixed_args(argv) if intermixed else parser.parse_args(argv)
    return mod.main(args)
