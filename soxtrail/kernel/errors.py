"""Named exit codes and the errors that map to them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXCEPTIONS_FOUND = 1  # only with --fail-on-exceptions / verify mismatches
EXIT_USAGE = 2
EXIT_PIPELINE_FAILURE = 3


class SoxtrailError(Exception):
    """Base error: its message is one clear line for the user."""

    exit_code = EXIT_PIPELINE_FAILURE


class ConfigError(SoxtrailError):
    """Bad usage or configuration (names the key and file)."""

    exit_code = EXIT_USAGE


class DatabaseUnavailable(SoxtrailError):
    """The configured database cannot be reached."""

    exit_code = EXIT_USAGE


class PlatformError(SoxtrailError):
    """The database's platform schema cannot be used as it stands (not at this release's
    version and not ours to apply, or its append-only triggers changed): the owner acts."""

    exit_code = EXIT_USAGE


class SourceError(SoxtrailError):
    """A source failed during snapshot (names the source)."""


class StoreError(SoxtrailError):
    """The evidence store failed."""


class PipelineError(SoxtrailError):
    """A phase failed."""
