"""Default paths and names; chosen in ``kolla_entry.cli``, never read deep inside the library."""

from __future__ import annotations

DEFAULT_PATCH_GLOB = "/*-patches/*.patch"
KOLLA_VENV = "/var/lib/kolla/venv"
KOLLA_SITE_PACKAGES = "/var/lib/kolla/venv/lib/python3/site-packages"
DEFAULT_STATE_FILE = "/run/kolla-entry/state.json"
DEFAULT_CONFIG_DIR = "/var/lib/kolla/config_files"
DEFAULT_STRIP = 1
#: The crash journal of an interrupted commit, kept in the target itself (see ``engine``).
JOURNAL_NAME = ".kolla-entry.journal"
# A patch file bigger than this is refused before it is read into memory (issue #8).
MAX_PATCH_BYTES = 8 * 1024 * 1024

ENV_PATCHES = "KOLLA_ENTRY_PATCHES"
ENV_TARGET = "KOLLA_ENTRY_TARGET"
ENV_ON_CONFLICT = "KOLLA_ENTRY_ON_CONFLICT"
ENV_STATE_FILE = "KOLLA_ENTRY_STATE_FILE"

#: Overlay mode (issue #16): the writable folder (an emptyDir) that holds the patched files, chosen by
#: ``--overlay``/``KOLLA_ENTRY_OVERLAY``, or used when the target is read-only and this folder exists.
DEFAULT_OVERLAY = "/var/lib/kolla-entry/overlay"
ENV_OVERLAY = "KOLLA_ENTRY_OVERLAY"
