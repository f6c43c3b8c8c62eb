"""
Helpers of the end-to-end tests: a Keystone "pod" in a container-like root whose every process is
started by the real ``kolla-entry`` of the project venv (issue #4). The fixtures are in conftest.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Tuple

from tests.helpers import configmap_dir

PROJECT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
VENV_CACHE = PROJECT / "work" / "venvs" / "keystone"
TRUNCATION_WARNING = "Truncating password to algorithm specific maximum length"
# One call of keystone's password check, the code path hot-fix 0002 changes.
PASSWORD_CHECK = (
    "import sys; sys.argv = sys.argv[:1]\n"
    "import keystone.conf\n"
    "from keystone.common import password_hashing\n"
    "from oslo_log import log\n"
    "keystone.conf.configure(); log.register_options(keystone.conf.CONF)\n"
    "keystone.conf.CONF(args=[], project='keystone', default_config_files=[])\n"
    "log.setup(keystone.conf.CONF, 'check')\n"
    "password_hashing.verify_length_and_trunc_password('short-password')\n"
)


def _load_podlayout() -> ModuleType:
    """Import examples/keystone/podlayout.py, the root layout the demo uses too."""
    path = PROJECT / "examples" / "keystone" / "podlayout.py"
    spec = importlib.util.spec_from_file_location("podlayout", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["podlayout"] = module
    spec.loader.exec_module(module)
    return module


podlayout = _load_podlayout()


def digest_tree(root: Path) -> Dict[str, Tuple[str, int]]:
    """
    Return every entry below ``root`` as (sha256 or link text, mode), like helpers.read_tree but
    hashed: a site-packages is ~200 MB.
    """
    tree: Dict[str, Tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                value = "-> " + os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                value = "<dir>"
            else:
                value = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[str(path.relative_to(root))] = (value, stat.S_IMODE(info.st_mode))
    return tree


class Pod:
    """
    A Keystone "pod" laid out below ``root``: what it runs goes through ``kolla-entry``, and every
    output it produces is kept in ``outputs`` (name, text) for the secret checks.
    """

    def __init__(self, root: Path, patches: Dict[str, bytes]) -> None:
        self.root = root
        self.password = "e2e-admin-" + secrets.token_hex(12)
        self.db_marker = secrets.token_hex(12)
        self.venv = root / podlayout.VENV_REL
        self.outputs: List[Tuple[str, str]] = []
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.server_logs: List[Path] = []
        self.port = podlayout.free_port()
        # Filled by the keystone_pod fixture: the tree before any run, the first check, the bootstrap.
        self.pristine: Dict[str, Tuple[str, int]] = {}
        self.fresh_check: Optional[subprocess.CompletedProcess[str]] = None
        self.bootstrap_results: List[subprocess.CompletedProcess[str]] = []
        self._lay_out(patches)

    def _lay_out(self, patches: Dict[str, bytes]) -> None:
        """Copy the venv, mount patches and Secret in the kubelet layout, install config.json."""
        self.venv.parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(VENV_CACHE), str(self.venv)], check=True)
        for folder in ("etc/keystone", "var/lib/keystone", "run/kolla-entry"):
            (self.root / folder).mkdir(parents=True)
        configmap_dir(self.root, "keystone-patches", patches)
        database = self.root / f"var/lib/keystone/keystone-{self.db_marker}.db"
        configmap_dir(self.root / "var/lib/kolla/secrets", "keystone", {
            "database-connection": f"sqlite:///{database}\n".encode(),
            "admin-password": f"{self.password}\n".encode(),
        })
        self.config = podlayout.install_config_files(self.root)
        self.env = podlayout.pod_environment(self.root, self.port)
        self.site_packages = podlayout.site_packages(self.venv)

    @property
    def base(self) -> str:
        """The service URL."""
        return f"http://127.0.0.1:{self.port}"

    def kolla(self, *args: str, name: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``kolla-entry ARGS`` to completion; keep its stdout and stderr."""
        result = subprocess.run(
            [*podlayout.kolla_entry_command(), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )
        self.outputs.append((name or " ".join(args), result.stdout + result.stderr))
        return result

    def bootstrap(self) -> List[subprocess.CompletedProcess[str]]:
        """Run keystone-manage's preparation steps, each as a one-shot ``kolla-entry run --``."""
        results = []
        for name, argv in podlayout.bootstrap_commands(self.root):
            result = self.kolla("run", "--config", str(self.config), "--", *argv, name=name)
            assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"
            results.append(result)
        return results

    def start(self) -> None:
        """``kolla-entry run`` with config.json's command (Keystone); wait until it answers."""
        log = self.root.parent / f"keystone-{len(self.server_logs)}.log"
        self.server_logs.append(log)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*podlayout.kolla_entry_command(), "run", "--config", str(self.config)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            podlayout.wait_for_http(f"{self.base}/v3", self.process)
        except RuntimeError as err:
            raise AssertionError(f"{err}:\n{log.read_text(errors='replace')}") from err

    def stop(self) -> Optional[int]:
        """SIGTERM the service (kolla-entry exec'd it, so it is the PID we started) and wait."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        status, self.process = self.process.returncode, None
        return status

    def ensure_running(self) -> None:
        """Start Keystone unless it runs."""
        if self.process is None or self.process.poll() is not None:
            self.start()

    def token(self) -> Tuple[int, Dict[str, str]]:
        """Ask for a token with the password of the rendered admin-openrc.sh; return (status, headers)."""
        password = podlayout.read_openrc(self.root / "etc/keystone/admin-openrc.sh")["OS_PASSWORD"]
        status, headers, _ = podlayout.http("POST", f"{self.base}/v3/auth/tokens",
                                            podlayout.password_auth(password))
        return status, headers

    def all_output(self) -> str:
        """Everything the pod wrote: kolla-entry outputs, service logs, the state file."""
        texts = [text for _, text in self.outputs]
        texts += [log.read_text(errors="replace") for log in self.server_logs if log.exists()]
        state = self.root / "run/kolla-entry/state.json"
        if state.exists():
            texts.append(state.read_text())
        return "\n".join(texts)

    def state_patches(self) -> Dict[str, str]:
        """Return {patch file name: status} from ``kolla-entry status --json``."""
        result = self.kolla("status", "--json")
        assert result.returncode == 0, result.stderr
        state = json.loads(result.stdout)
        patches = state["patches"]
        entries = patches["patches"] if isinstance(patches, dict) else patches
        return {Path(entry["patch"]).name: entry["status"] for entry in entries}


def example_patches() -> Dict[str, bytes]:
    """The hot-fixes of patches/keystone, by file name."""
    return dict(podlayout.example_patches())
