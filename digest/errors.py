"""Errors raised by the digest package.

DigestError
 ├── ConfigError      invalid configuration, environment or usage (exit status 2)
 │    └── UsageError  a command-line value that names nothing known, e.g. a date
 ├── StoreError       the data directory or the store cannot be used
 ├── FetchError       one keyword could not be fetched from the arXiv API
 └── DeliveryError    the mail server cannot be used at all

Every message is one line that names the file, keyword, address or URL at
fault, so the command line can print it as it is.
"""


class DigestError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(DigestError):
    """Invalid configuration file, environment variable or command-line value."""


class UsageError(ConfigError):
    """A command-line value that names no known date, address or file."""


class StoreError(DigestError):
    """The data directory or the store in it cannot be read or written."""


class FetchError(DigestError):
    """A keyword's papers could not be fetched after every retry."""


class DeliveryError(DigestError):
    """The mail server cannot be reached or rejects the session as a whole."""
