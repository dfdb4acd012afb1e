"""nas: differentiable neural architecture search with pluggable estimators for discrete choices."""
from .errors import CheckpointError, ConfigError, DataError, NasError

__version__ = "0.1.0"
__all__ = ["NasError", "ConfigError", "DataError", "CheckpointError", "__version__"]
