"""
Import budget of the pod start path (issue #7).

``kolla-entry run`` starts every OpenStack pod, so a module it imports without needing it is paid at
every start. These tests run the real command under ``python -X importtime`` with a Kolla config.json
and no patch, exactly as a pod starts (stderr not a TTY, so JSON log lines; ``POD_IP`` set), and fail when a module
that this start does not need is imported: a forbidden library module, or any of our own modules outside the
short list a no-patch start needs (issue #13). No timing: the list of modules is the contract;
``make bench`` measures the time. Two controls run the same check where the modules must appear (a
config.yaml, a patch), so a check that can no longer see an import fails too.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Set

import pytest

import kolla_entry
from tests.helpers import make_tree

REPO = Path(kolla_entry.__file__).resolve().parent.parent

#: Modules a no-patch, JSON-config, JSON-log start must never import, with why each is heavy or unneeded.
FORBIDDEN = {
    "click": "a plain `run` is parsed without it (~13 ms); click serves every other command",
    "asyncio": "pulled in by structlog.stdlib; ~25 ms, never used",
    "structlog": "the JSON log path renders without it; its import pulls in asyncio",
    "structlog.dev": "console rendering: only on a TTY",
    "ssl": "pulled in by asyncio; no TLS at start",
    "yaml": "the config is JSON; PyYAML only for config.yaml",
    "unidiff": "patch parsing: only when a patch file exists",
    "dataclasses": "imports inspect (ast, dis, tokenize) and generates code per class; the start's records are "
                   "NamedTuples (issue #13)",
    "inspect": "pulled in by dataclasses; never needed at start",
    "kolla_entry.patching.engine": "the patch engine: only when a patch file exists",
    "kolla_entry.patching.plan": "the patch engine: only when a patch file exists",
    "kolla_entry.patching.parse": "patch parsing: only when a patch file exists",
    "kolla_entry.patching.match": "hunk matching: only when a patch file exists",
    "kolla_entry.patching.pycache": "pyc invalidation: only after a patch is applied",
    "kolla_entry.patching.bytecode": "pyc writing: only after a patch is applied",
    "kolla_entry.patching.transaction": "the patch commit: config files and the state file use kolla_entry.fs.atomic",
    "kolla_entry.patching.journal": "the commit journal: only when a patch is applied or a commit is recovered",
    "kolla_entry.overlay.apply": "overlay mode: only when a patch file exists or a generation must be cleared",
    "kolla_entry.start.depend": "dependency waits: only when dependencies are configured",
    "subprocess": "only to ask a venv's python for its purelib when the default target is missing",
    "tempfile": "config files use the atomic writer of kolla_entry.patching.transaction",
    "logging": "structured events go through kolla_entry.log",
    "argparse": "the CLI parses options itself or with click",
    "traceback": "only on the unexpected-error path",
    "threading": "never needed at start",
    "hashlib": "loads OpenSSL (~2.5 ms); the state file's digests use the built-in sha256 (digest.py)",
    "socket": "MY_IP comes from POD_IP in a pod; socket only finds the default-route address without it",
    "difflib": "never needed at start",
    "multiprocessing": "never needed at start",
    "concurrent": "never needed at start",
    "email": "never needed at start",
    "http": "never needed at start",
    "pathlib": "with urllib.parse and ipaddress, ~3 ms; the start passes paths as strings (issue #13)",
}


#: Every kolla_entry module a no-patch, JSON-config start may import (issue #13): the CLI's plain `run`
#: reader, the start steps, the patch discovery and overlay choice (to find there is nothing to patch),
#: the state file and the filesystem seam. A module that joins this path must be added here, on purpose.
ALLOWED_OWN = frozenset({
    "kolla_entry", "kolla_entry.__main__", "kolla_entry.cli", "kolla_entry.constants", "kolla_entry.errors",
    "kolla_entry.log",
    "kolla_entry.fs", "kolla_entry.fs.atomic", "kolla_entry.fs.digest", "kolla_entry.fs.seam",
    "kolla_entry.overlay", "kolla_entry.overlay.select",
    "kolla_entry.patching", "kolla_entry.patching.discover", "kolla_entry.patching.state",
    "kolla_entry.start", "kolla_entry.start.copier", "kolla_entry.start.execute", "kolla_entry.start.fields",
    "kolla_entry.start.install", "kolla_entry.start.model", "kolla_entry.start.props",
    "kolla_entry.start.reader", "kolla_entry.start.render", "kolla_entry.start.runner",
})


def imported_modules(stderr: str) -> Set[str]:
    """
    The module names in ``-X importtime`` output.

    Lines look like ``import time:   self [us] |  cumulative | <indent>name``; other lines (log
    events) are ignored.
    """
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name)
    return names


def forbidden_in(names: Set[str]) -> List[str]:
    """The forbidden modules (or their submodules) among ``names``, each with its reason."""
    found = []
    for module, why in sorted(FORBIDDEN.items()):
        if any(name == module or name.startswith(module + ".") for name in names):
            found.append(f"{module} ({why})")
    return found


def own_beyond_allowed(names: Set[str]) -> List[str]:
    """Our own modules among ``names`` that a no-patch start must not need."""
    return sorted(name for name in names if name.split(".")[0] == "kolla_entry" and name not in ALLOWED_OWN)


def _start(tmp_path: Path, config_name: str, config_text: str) -> subprocess.CompletedProcess[str]:
    """Run ``kolla-entry run`` under ``-X importtime`` with one config file (and the patches in ``patches/``)."""
    user = pwd.getpwuid(os.getuid()).pw_name
    make_tree(tmp_path, {"config_files/service.conf": b"[DEFAULT]\ndebug = false\n"})
    (tmp_path / "config_files" / config_name).write_text(config_text.replace("USER", user))
    (tmp_path / "site-packages").mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KOLLA_") and key not in {"DEBUG_CONTAINER", "SUDO_UID"}}
    # As a pod of our charts starts: POD_IP from the Downward API (a documentation address, never contacted).
    env.update({"KOLLA_CONFIG_STRATEGY": "COPY_ALWAYS", "POD_IP": "192.0.2.10"})
    # Without `site` (-S), the package from this checkout and the venv's site-packages as plain path entries:
    # an editable install's finder, loaded by `site`, imports pathlib and re before any of our code, which
    # would hide those imports; an image's installed wheel has no such finder.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])
    argv = [sys.executable, "-S", "-X", "importtime", "-m", "kolla_entry", "run",
            "--config", str(tmp_path / "config_files" / config_name),
            "--patches", str(tmp_path / "patches" / "*.patch"), "--target", str(tmp_path / "site-packages"),
            "--state-file", str(tmp_path / "state.json"), "--", "/bin/true"]
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)


def _config(tmp_path: Path) -> Dict[str, object]:
    return {"command": "/bin/false",
            "config_files": [{"source": str(tmp_path / "config_files" / "service.conf"),
                              "dest": str(tmp_path / "etc" / "service.conf"), "owner": "USER", "perm": "0600"}]}


def test_no_patch_start_imports_nothing_heavy(tmp_path: Path) -> None:
    """A JSON-config, no-patch start reaches the exec without importing any forbidden module."""
    done = _start(tmp_path, "config.json", json.dumps(_config(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    # The start really ran up to the config step (so the import list covers the whole path).
    assert (tmp_path / "etc" / "service.conf").read_bytes() == b"[DEFAULT]\ndebug = false\n"
    names = imported_modules(done.stderr)
    assert "kolla_entry.start.runner" in names
    assert forbidden_in(names) == []
    assert own_beyond_allowed(names) == []


def test_yaml_config_imports_yaml(tmp_path: Path) -> None:
    """Control: with a config.yaml the same check sees PyYAML, so the detection itself works."""
    pytest.importorskip("yaml")
    done = _start(tmp_path, "config.yaml", json.dumps(_config(tmp_path)))  # JSON is valid YAML
    assert done.returncode == 0, done.stderr[-2000:]
    assert "yaml (the config is JSON; PyYAML only for config.yaml)" in forbidden_in(imported_modules(done.stderr))


def test_start_with_a_patch_imports_the_engine(tmp_path: Path) -> None:
    """
    Control: with one patch to apply, the same checks see the engine, the commit and dataclasses, so
    they would catch those imports on the no-patch path.
    """
    make_tree(tmp_path, {"site-packages/mod.py": b"a = 1\n",
                         "patches/0001-a.patch": b"--- a/mod.py\n+++ b/mod.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"})
    done = _start(tmp_path, "config.json", json.dumps(_config(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "site-packages" / "mod.py").read_bytes() == b"a = 2\n"  # the patch was applied
    names = imported_modules(done.stderr)
    found = forbidden_in(names)
    for module in ("dataclasses", "pathlib", "kolla_entry.patching.engine", "kolla_entry.patching.transaction"):
        assert any(line.startswith(module + " (") for line in found), (module, found)
    assert "kolla_entry.patching.plan" in own_beyond_allowed(names)


def test_imported_modules_parses_importtime_lines() -> None:
    """The parser keeps module names (nested ones included) and ignores log lines and the header."""
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       209 |      37272 | structlog",
        "import time:       162 |      25917 |     asyncio",
        '{"event": "run_step", "level": "info"}',
    ])
    assert imported_modules(stderr) == {"structlog", "asyncio"}
    assert forbidden_in({"asyncio.base_events"}) == ["asyncio (pulled in by structlog.stdlib; ~25 ms, never used)"]
