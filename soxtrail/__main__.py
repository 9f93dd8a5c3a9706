"""`python -m soxtrail` runs the CLI."""

from __future__ import annotations

from soxtrail.cli.main import main

if __name__ == "__main__":
    main()
