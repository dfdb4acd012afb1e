"""User-facing errors.

Everything a user can get wrong (a config key, a dataset path, a genotype file) raises a
:class:`NasError` with a one-line message that names the problem and the fix. The CLI layer
prints it without a traceback and exits with code 2.
"""


class NasError(Exception):
    """A user error: the message is one line and says how to fix it."""


class ConfigError(NasError):
    """A config key, type or value is wrong."""


class DataError(NasError):
    """A dataset is missing, unreadable or inconsistent."""


class CheckpointError(NasError):
    """A checkpoint or genotype file is missing, corrupt or does not match the config."""
