"""`python -m tests.support.faulty_cli ARGS…`: the real `soxtrail` CLI, killed or paused on cue.

The kill and pause tests (tests/reliability) drive the CLI in a child process, out of a
pytest plugin's reach. This launcher reads their instructions from its environment, adds
a :class:`tests.support.faults.FaultObserver` to every pipeline the CLI opens
(`soxtrail.pipeline.OBSERVERS`), then calls the CLI's own `main()`; production code reads
none of this.

* ``SOXTRAIL_TEST_KILL_AT=<phase>:<point>``: the process sends itself SIGKILL there.
* ``SOXTRAIL_TEST_PAUSE_AT=<phase>:<point>=<marker file>``: it writes the marker (its pid)
  there and waits until the test removes it (at most 120 s).

Points: those of `Observer.checkpoint` (`start`, `done`, `object<N>` after the Nth object
loaded, `control<N>` after the Nth control evidence row) and `put<N>`, after the Nth store
write (`put_file` or `put_bytes`) of the phase.
"""

from __future__ import annotations

import os


def main() -> None:
    """Install the faults the environment asks for, then run the real CLI."""
    # imported here, not above: worker processes started with `spawn` import this module
    # again (as __mp_main__) and need none of it
    from soxtrail import pipeline
    from soxtrail.cli import main as soxtrail_main
    from tests.support.faults import FaultObserver, Faults

    faults = Faults.from_env(os.environ)
    if faults.kill_at or faults.pause_at:
        pipeline.OBSERVERS.append(FaultObserver(faults))
    soxtrail_main()


if __name__ == "__main__":
    main()
