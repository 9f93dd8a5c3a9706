"""`python -m soxtrail.reconcile.sqllint PATHS`: sqlfluff with the dbt templater.

The dbt templater compiles every model, which needs a reachable database: this
uses the same one as the pipeline (SOXTRAIL_DATABASE_URL or the embedded server)
and the profile the wrapper writes, so `make lint` needs no hand-made profile.
"""

from __future__ import annotations

import os
import sys

from soxtrail.kernel.database import home, resolve_database
from soxtrail.reconcile.dbt import prepare_environment


def main(argv: list[str]) -> int:
    """Lint the given paths (default: models, macros); return sqlfluff's exit code."""
    from sqlfluff.cli.commands import cli

    db = resolve_database()
    profiles = home() / "lint" / "profiles"
    prepare_environment(db, profiles)
    os.environ["DBT_PROFILES_DIR"] = str(profiles)
    args = ["lint", *(argv or ["models", "macros"])]
    try:
        cli.main(args=args, prog_name="sqlfluff", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
