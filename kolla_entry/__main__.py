"""``python -m kolla_entry``: the same as the ``kolla-entry`` command."""

from __future__ import annotations

from kolla_entry.cli import main

if __name__ == "__main__":
    main()
