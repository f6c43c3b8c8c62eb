"""
A container-like root for the Keystone example, shared by ``demo.py`` and ``tests/e2e``.

Standard library only: the demo runs it before anything but the project venv exists.

What a pod would have at ``/`` is laid out below ``root`` instead:

- ``keystone-patches/``: the hot-fixes, in the kubelet ConfigMap layout (``..data`` symlink to a
  timestamped folder, one symlink per key);
- ``var/lib/kolla/config_files/``: Kolla's ``config.json`` and the files it copies;
- ``var/lib/kolla/secrets/keystone/``: the Secret (database URL, admin password), same layout;
- ``var/lib/kolla/venv``: the service venv (the "Kolla venv"), patched in place;
- ``etc/keystone``, ``var/lib/keystone``: the folders the image would ship;
- ``run/kolla-entry/state.json``: kolla-entry's state file.

The example files in this folder carry two markers, filled once when the example is installed
(:func:`install_config_files`): ``@KOLLA_ROOT@`` in front of every absolute path (``root`` here, the
empty string in an image) and ``@KEYSTONE_USER@``, the owner of the config files (the user running
the demo or the tests here, ``keystone`` in an image).
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

EXAMPLE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = EXAMPLE_DIR.parent.parent
PATCHES_DIR = PROJECT_DIR / "patches" / "keystone"
CONSTRAINTS = EXAMPLE_DIR / "constraints.txt"
ROOT_MARK = "@KOLLA_ROOT@"
USER_MARK = "@KEYSTONE_USER@"
# The files of this folder that config.json copies, as config.json names its sources.
CONFIG_SOURCES = ("config.json", "keystone.conf", "admin-openrc.sh", "keystone_wsgi.py")
SECRETS_REL = "var/lib/kolla/secrets/keystone"
VENV_REL = "var/lib/kolla/venv"
STAMP_NAME = ".kolla-example-stamp"
# The kubelet's timestamped data folder; any name starting with ".." works the same.
_KUBELET_STAMP = "..2026_11_25_10_00_00.000000001"


def current_user() -> str:
    """Return the name of the user running this process."""
    return pwd.getpwuid(os.getuid()).pw_name


def fill_markers(text: str, root: Path, user: str) -> str:
    """
    Replace the ``@KOLLA_ROOT@`` and ``@KEYSTONE_USER@`` markers of an example file.

    Args:
        text: content of config.json, keystone.conf, ...
        root: the container-like root; ``Path("/")`` gives the paths of a real image.
        user: the owner of the rendered config files.

    Returns:
        The text with the markers replaced (the root without a trailing slash).
    """
    prefix = "" if str(root) == "/" else str(root).rstrip("/")
    return text.replace(ROOT_MARK, prefix).replace(USER_MARK, user)


def install_config_files(root: Path, user: Optional[str] = None) -> Path:
    """
    Copy the example's config.json and its sources to ``root/var/lib/kolla/config_files``.

    Args:
        root: the container-like root.
        user: the config files' owner; default: the current user.

    Returns:
        The path of the installed config.json.
    """
    dest = root / "var/lib/kolla/config_files"
    dest.mkdir(parents=True, exist_ok=True)
    owner = user or current_user()
    for name in CONFIG_SOURCES:
        (dest / name).write_text(fill_markers((EXAMPLE_DIR / name).read_text(), root, owner))
    return dest / "config.json"


def kubelet_volume(mount: Path, files: Mapping[str, bytes]) -> Path:
    """
    (Re)create ``mount`` the way the kubelet mounts a ConfigMap or a Secret.

    The data sits in a hidden timestamped folder, ``..data`` links to it and every key is a
    symlink through ``..data``. An existing mount is replaced as a whole.

    Returns:
        ``mount``.
    """
    if mount.exists():
        shutil.rmtree(mount)
    stamp = mount / _KUBELET_STAMP
    stamp.mkdir(parents=True)
    for key, data in files.items():
        (stamp / key).write_bytes(data)
    os.symlink(_KUBELET_STAMP, mount / "..data")
    for key in files:
        os.symlink(f"..data/{key}", mount / key)
    return mount


def example_patches() -> Dict[str, bytes]:
    """Return the example hot-fixes of ``patches/keystone`` by file name."""
    return {p.name: p.read_bytes() for p in sorted(PATCHES_DIR.glob("*.patch"))}


def secrets_for(root: Path, password: str) -> Dict[str, bytes]:
    """
    Return the Secret's files: the database URL (SQLite below ``root``) and the admin password.

    Args:
        root: the container-like root.
        password: the bootstrap admin password.
    """
    database = root / "var/lib/keystone/keystone.db"
    return {
        "database-connection": f"sqlite:///{database}\n".encode(),
        "admin-password": f"{password}\n".encode(),
    }


def lay_out_root(root: Path, patches: Mapping[str, bytes], secrets: Mapping[str, bytes]) -> Path:
    """
    Lay out (or refresh) everything of the root except the venv and keystone's own state.

    Returns:
        The installed config.json.
    """
    for folder in ("etc/keystone", "var/lib/keystone", "run/kolla-entry"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    kubelet_volume(root / "keystone-patches", patches)
    kubelet_volume(root / SECRETS_REL, secrets)
    return install_config_files(root)


def site_packages(venv: Path) -> Path:
    """Return the single ``lib/python3.*/site-packages`` folder of ``venv``."""
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    if len(found) != 1:
        raise RuntimeError(f"{venv}: expected one lib/python3.*/site-packages, found {len(found)}")
    return found[0]


def venv_stamp(python: str) -> str:
    """Return what a built service venv must match: the interpreter's version and the pins."""
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout.strip()
    pins = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    return f"{version}\n{pins}\n"


def ensure_service_venv(venv: Path, python: str) -> bool:
    """
    Create the Keystone service venv at ``venv`` unless a complete one is already there.

    A venv counts as complete when its stamp (written last) matches the interpreter and the
    constraints; anything else at ``venv`` is removed and rebuilt.

    Args:
        venv: where the venv lives (its scripts' shebangs point there, so it is built in place).
        python: the interpreter to build it with (keystone 30 needs Python >= 3.11).

    Returns:
        True when the venv was built, False when it was reused.
    """
    stamp = venv_stamp(python)
    marker = venv / STAMP_NAME
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Two test sessions (or a test run and the demo) must not build the same venv at once.
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == stamp:
            return False
        _build_venv(venv, python)
        marker.write_text(stamp)
    return True


def _build_venv(venv: Path, python: str) -> None:
    """Build the service venv at ``venv`` from scratch, pinned by the constraints."""
    if venv.exists():
        shutil.rmtree(venv)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for argv in ([python, "-m", "venv", str(venv)], [*pip, "-c", str(CONSTRAINTS), "keystone"]):
        # Quiet unless it fails: pip's warnings about the local index set-up are noise here.
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed with status {result.returncode}:\n{result.stdout}")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pod_environment(root: Path, port: int, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """
    Return the environment of the Keystone container: kolla-entry's settings and the pod's values.

    Args:
        root: the container-like root.
        port: the port keystone listens on (127.0.0.1 only).
        base: the environment to extend (default ``os.environ``); its KOLLA_* variables are dropped.
    """
    # A pod has no SUDO_UID: under sudo, kolla-entry would ignore the path variables below.
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("KOLLA_") and k != "SUDO_UID"
    }
    venv = root / VENV_REL
    env.update(
        {
            "KOLLA_ENTRY_PATCHES": str(root / "*-patches" / "*.patch"),
            "KOLLA_ENTRY_TARGET": str(site_packages(venv)),
            "KOLLA_ENTRY_STATE_FILE": str(root / "run/kolla-entry/state.json"),
            "KOLLA_CONFIG_STRATEGY": "COPY_ALWAYS",
            "OS_KEYSTONE_CONFIG_DIR": str(root / "etc/keystone"),
            "KEYSTONE_BIND_HOST": "127.0.0.1",
            "KEYSTONE_PUBLIC_HOST": "127.0.0.1",
            "KEYSTONE_BIND_PORT": str(port),
            # eventlet's 8-line deprecation banner on every keystone start says nothing useful here.
            "PYTHONWARNINGS": "ignore",
            # As in a Kolla image, whose service user cannot write site-packages: only kolla-entry
            # changes the tree (and must deal with the stale bytecode of what it patches).
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def bootstrap_commands(root: Path) -> List[Tuple[str, List[str]]]:
    """
    Return Keystone's one-shot preparation steps, each a (name, argv) to run after ``kolla-entry run --``.

    Scripts are started through the venv's python explicitly, so a copied venv (whose shebangs
    still name the original) runs its own site-packages. The bootstrap step reads the admin
    password and URL from the admin-openrc.sh that kolla-entry rendered from the Secret: the
    password is never on a command line.
    """
    python = str(root / VENV_REL / "bin/python")
    manage = [python, str(root / VENV_REL / "bin/keystone-manage"), "--config-file",
              str(root / "etc/keystone/keystone.conf")]
    owner = ["--keystone-user", current_user(),
             "--keystone-group", grp.getgrgid(os.getgid()).gr_name]
    bootstrap = " ".join(f"'{arg}'" for arg in manage) + (
        " bootstrap --bootstrap-username admin --bootstrap-project-name admin"
        " --bootstrap-role-name admin --bootstrap-region-id \"$OS_REGION_NAME\""
        " --bootstrap-public-url \"$OS_AUTH_URL\""
    )
    openrc = root / "etc/keystone/admin-openrc.sh"
    script = f". '{openrc}' && export OS_BOOTSTRAP_PASSWORD=\"$OS_PASSWORD\" && exec {bootstrap}"
    return [
        ("db_sync", [*manage, "db_sync"]),
        ("fernet_setup", [*manage, "fernet_setup", *owner]),
        ("credential_setup", [*manage, "credential_setup", *owner]),
        ("bootstrap", ["/bin/sh", "-c", script]),
    ]


def read_openrc(path: Path) -> Dict[str, str]:
    """Return the ``export NAME='value'`` lines of a rendered admin-openrc.sh as a dict."""
    values: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            values[name] = value.strip("'")
    return values


def http(method: str, url: str, body: Optional[dict] = None,
         headers: Optional[Mapping[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    """
    Send one HTTP request; return (status, headers, body) also for 4xx/5xx answers.

    Raises:
        OSError: the server could not be reached.
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def password_auth(password: str) -> dict:
    """Return the body of a project-scoped password authentication as the bootstrap admin."""
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": password}},
            },
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
        }
    }


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> float:
    """
    Wait until ``url`` answers (any HTTP status) while ``process`` is alive.

    Returns:
        Seconds waited.

    Raises:
        RuntimeError: the process ended, or the timeout passed.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode} before answering")
        try:
            http("GET", url)
            return time.monotonic() - start
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def kolla_entry_command() -> List[str]:
    """Return how to start the kolla-entry of the interpreter running this code (the project venv)."""
    script = Path(sys.executable).with_name("kolla-entry")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kolla_entry"]
