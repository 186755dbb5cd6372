"""Exit statuses and the usage error every command shares (kept apart from cli.py to avoid import cycles)."""

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad usage or bad input: reported as one line on stderr, exit status 2."""
