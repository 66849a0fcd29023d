"""The store CLI's former name, kept so that existing cron lines and scripts keep working.

``python -m jobs.models ...`` runs :func:`jobs.versions.main` as it is: the same commands, flags, output and exit
status, with no warning in the logs. New command lines should say ``python -m jobs.versions`` (the commands
over a store's versions); this name stays because operators' schedules call it.
"""

from __future__ import annotations

import sys

from jobs.versions import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
