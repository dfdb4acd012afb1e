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


class StorageError(NasError):
    """A file or folder cannot be read or written: a full disk, missing permissions, a name too long."""


class TrainingError(NasError):
    """The optimisation failed: the loss became NaN/inf or diverged."""


_FIXES = {
    "ENOSPC": "free space on that disk, or give a run folder on another disk (--out)",
    "EDQUOT": "free space in your quota, or give a run folder on another disk (--out)",
    "EACCES": "make it writable for you, or give another folder (--out)",
    "EPERM": "make it writable for you, or give another folder (--out)",
    "EROFS": "that file system is read-only: give a folder on a writable one (--out)",
    "ENAMETOOLONG": "give a shorter path (--out) or a shorter run name (name=...)",
    "EEXIST": "a file is in the way: give another folder (--out)",
    "ENOTDIR": "a file is in the way where a folder is needed: give another folder (--out)",
    "EISDIR": "a folder is in the way where a file is needed: give another path",
    "ENOENT": "the folder is gone (was it removed while the run was writing?): give an existing path",
}


def storage_error(e: OSError, path: object, action: str = "write") -> StorageError:
    """A one-line :class:`StorageError` from an ``OSError`` met while ``action``-ing ``path``:
    the path, the system's reason and the fix for the common causes."""
    import errno as _errno
    import os as _os

    code = _errno.errorcode.get(e.errno or 0, "")
    reason = e.strerror or (_os.strerror(e.errno) if e.errno else str(e)) or type(e).__name__
    fix = _FIXES.get(code, "check the path, its permissions and the free space")
    return StorageError(f"cannot {action} {path}: {reason}{f' ({code})' if code else ''}; {fix}")
