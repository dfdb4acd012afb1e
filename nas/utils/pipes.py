"""Command-line scripts whose output is piped into ``head`` or ``less``."""
import signal


def exit_quietly_on_closed_pipe() -> None:
    """Let a closed stdout (``tool | head -1``) end the process as for any Unix tool, instead of a
    ``BrokenPipeError`` traceback. Scripts call this in their ``__main__`` block only."""
    if hasattr(signal, "SIGPIPE"):  # not on Windows
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
