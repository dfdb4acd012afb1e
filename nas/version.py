"""The package's version, apart from :mod:`nas` so that its modules can read it without importing
the package's API."""
__version__ = "0.1.0"
