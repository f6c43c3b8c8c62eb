"""
A real Keystone 30.0.0 through ``kolla-entry``: hot-fixes, rendered config and Secret, restart,
refusal on conflict, no secret in any log (issue #4). Select with ``pytest -m e2e``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict

import pytest

from tests.e2e.podkit import (
    PASSWORD_CHECK,
    PROJECT,
    TRUNCATION_WARNING,
    Pod,
    digest_tree,
    podlayout,
)

pytestmark = pytest.mark.e2e

HEADER = "0001-x-kolla-hotfix-header"
PATCH_1 = "0001-x-kolla-hotfix-header.patch"
PATCH_2 = "0002-bcrypt-warn-only-when-truncating.patch"
PATCH_NOVA = "0003-nova-claims-log-node-name.patch"
PATCH_CONFLICT = "0004-keystone-29-revoke-cascade.patch"
PATCHED_FILES = ("keystone/server/flask/application.py", "keystone/common/password_hashing.py")


def _statuses(report_text: str) -> Dict[str, str]:
    """Return {patch file name: status} of a ``--json`` report."""
    return {Path(p["patch"]).name: p["status"] for p in json.loads(report_text)["patches"]}


def _events(stderr: str) -> list:
    """Return the event names of kolla-entry's JSON log lines in ``stderr`` (other lines are the service's)."""
    events = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record["event"])
    return events


def _stale_bytecode(source: Path) -> bool:
    """
    True when the module's cached bytecode (pip wrote it at install) does not match its source:
    the patch engine must remove or rewrite it (an unchecked-hash pyc would hide the fix).
    """
    pyc = Path(importlib.util.cache_from_source(str(source)))
    if not pyc.exists():
        return False
    header = pyc.read_bytes()[:16]
    flags = int.from_bytes(header[4:8], "little")
    if flags == 0:  # timestamp-based: source mtime and size
        info = source.stat()
        return header[8:16] != (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (
            info.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    return header[8:16] != importlib.util.source_hash(source.read_bytes())


def _expected_with_gnu_patch(pristine_site: Path, workdir: Path) -> Dict[str, bytes]:
    """Apply the example patches to copies of the pristine files with GNU patch; return their bytes."""
    for rel in PATCHED_FILES:
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pristine_site / rel, workdir / rel)
    for name in (PATCH_1, PATCH_2):
        patch = podlayout.PATCHES_DIR / name
        subprocess.run(["patch", "-p1", "-s", "--no-backup-if-mismatch", "-i", str(patch)],
                       cwd=workdir, check=True)
    return {rel: (workdir / rel).read_bytes() for rel in PATCHED_FILES}


class TestFreshStart:
    def test_check_reports_keystone_patches_applicable_and_nova_skipped(self, keystone_pod: Pod) -> None:
        """On the pristine venv, check-patches: both keystone hot-fixes applicable, the nova one skipped."""
        check = keystone_pod.fresh_check
        assert check is not None
        assert check.returncode == 0, check.stderr
        assert _statuses(check.stdout) == {PATCH_1: "applicable", PATCH_2: "applicable", PATCH_NOVA: "skipped"}
        nova = next(p for p in json.loads(check.stdout)["patches"] if p["patch"].endswith(PATCH_NOVA))
        assert "nova/compute/claims.py" in nova["reason"]

    def test_run_writes_what_gnu_patch_writes_and_nothing_else(
        self, keystone_pod: Pod, venv_cache: Path, tmp_path: Path
    ) -> None:
        """The patched modules equal GNU patch's result; only they (and their bytecode) changed."""
        pristine_site = podlayout.site_packages(venv_cache)
        expected = _expected_with_gnu_patch(pristine_site, tmp_path)
        for rel, content in expected.items():
            assert (keystone_pod.site_packages / rel).read_bytes() == content, rel
        now = digest_tree(keystone_pod.site_packages)
        changed = {k for k in set(now) | set(keystone_pod.pristine) if now.get(k) != keystone_pod.pristine.get(k)}
        assert set(PATCHED_FILES) <= changed
        bytecode = re.compile(r"^keystone/(server/flask|common)/__pycache__/(application|password_hashing)\.")
        assert {k for k in changed if k not in PATCHED_FILES and not bytecode.match(k)} == set()
        assert [rel for rel in PATCHED_FILES if _stale_bytecode(keystone_pod.site_packages / rel)] == []

    def test_token_is_issued_with_the_rendered_secret(self, keystone_pod: Pod) -> None:
        """A token comes back (201) for the password kolla-entry rendered from the Secret."""
        keystone_pod.ensure_running()
        status, headers = keystone_pod.token()
        assert status == 201
        assert headers.get("X-Subject-Token", "").startswith("gAAAA")

    def test_hotfix_header_and_rendered_env_visible_over_http(self, keystone_pod: Pod) -> None:
        """GET /v3 carries hot-fix 0001's header, and its link is public_endpoint rendered from the env."""
        keystone_pod.ensure_running()
        status, headers, body = podlayout.http("GET", f"{keystone_pod.base}/v3")
        assert status == 200
        assert headers.get("X-Kolla-Hotfix") == HEADER
        assert json.loads(body)["version"]["links"][0]["href"] == f"{keystone_pod.base}/v3/"

    def test_password_hotfix_removes_the_spurious_warning(self, keystone_pod: Pod, venv_cache: Path) -> None:
        """Hot-fix 0002: the pristine tree warns on a short password, the patched one does not."""
        def check(venv: Path) -> str:
            result = subprocess.run([str(venv / "bin/python"), "-c", PASSWORD_CHECK], capture_output=True,
                                    text=True, env={**keystone_pod.env, "PYTHONWARNINGS": "ignore"}, timeout=120)
            assert result.returncode == 0, result.stderr
            return result.stdout + result.stderr

        assert TRUNCATION_WARNING in check(venv_cache)
        assert TRUNCATION_WARNING not in check(keystone_pod.venv)
        keystone_pod.ensure_running()
        assert keystone_pod.token()[0] == 201
        assert TRUNCATION_WARNING not in keystone_pod.all_output()

    def test_status_lists_the_hotfixes(self, keystone_pod: Pod) -> None:
        """`kolla-entry status` names both keystone hot-fixes as live and the nova one as skipped."""
        states = keystone_pod.state_patches()
        assert states[PATCH_1] in {"applied", "already-applied"}
        assert states[PATCH_2] in {"applied", "already-applied"}
        assert states[PATCH_NOVA] == "skipped"

    def test_first_bootstrap_run_applied_the_patches(self, keystone_pod: Pod) -> None:
        """The first one-shot `run` applied the patches; the later ones found them already applied."""
        first, *later = (_events(result.stderr) for result in keystone_pod.bootstrap_results)
        assert first.count("patch_applied") == 2
        for events in later:
            assert "patch_applied" not in events
            assert events.count("patch_already_applied") == 2


class TestRestart:
    def test_restart_finds_patches_applied_and_keeps_the_tree(self, keystone_pod: Pod) -> None:
        """Stop (SIGTERM, clean exit) and run again: already-applied, tree unchanged, Keystone serves."""
        keystone_pod.ensure_running()
        before = digest_tree(keystone_pod.site_packages)
        assert keystone_pod.stop() == 0
        keystone_pod.start()
        states = keystone_pod.state_patches()
        assert (states[PATCH_1], states[PATCH_2], states[PATCH_NOVA]) == (
            "already-applied", "already-applied", "skipped")
        assert digest_tree(keystone_pod.site_packages) == before
        status, headers = keystone_pod.token()
        assert (status, headers.get("X-Kolla-Hotfix")) == (201, HEADER)


class TestConflict:
    def test_conflicting_patch_refuses_to_start(
        self, fresh_pod_factory: Callable[[Dict[str, bytes]], Pod], conflict_patches: Dict[str, bytes]
    ) -> None:
        """A patch for keystone 29.1.0: exit 1 naming patch, file and hunk; nothing started or written."""
        pod = fresh_pod_factory(conflict_patches)
        before = digest_tree(pod.site_packages)
        # A kolla-entry that started Keystone anyway would hang here: the timeout turns that into a failure.
        result = pod.kolla("run", "--config", str(pod.config), timeout=90)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert any(
            PATCH_CONFLICT in line and "keystone/api/auth.py" in line and re.search(r"hunk\W{0,4}1\b", line)
            for line in output.splitlines()
        ), output
        assert "keystone_wsgi: serving" not in output
        with pytest.raises(OSError):
            podlayout.http("GET", f"{pod.base}/v3")
        assert not (pod.root / "etc/keystone/keystone.conf").exists()
        assert digest_tree(pod.site_packages) == before
        assert pod.password not in output and pod.db_marker not in output


class TestSecrets:
    def test_secret_values_never_reach_a_log(self, keystone_pod: Pod) -> None:
        """Password and database URL are in the rendered files, and in no output, log or state file."""
        keystone_pod.ensure_running()
        assert keystone_pod.token()[0] == 201
        keystone_pod.kolla("status")
        assert keystone_pod.db_marker in (keystone_pod.root / "etc/keystone/keystone.conf").read_text()
        assert keystone_pod.password in (keystone_pod.root / "etc/keystone/admin-openrc.sh").read_text()
        everything = keystone_pod.all_output()
        assert "keystone_wsgi: serving" in everything  # the server's own log is part of what is checked
        assert keystone_pod.password not in everything
        assert keystone_pod.db_marker not in everything


class TestDemo:
    def test_make_demo_twice(self, venv_cache: Path, tmp_path: Path) -> None:
        """The demo runs to its checks, and a second run reuses everything with patches already applied."""
        work = tmp_path / "demo"
        (work / "root" / podlayout.VENV_REL).parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(venv_cache), str(work / "root" / podlayout.VENV_REL)], check=True)
        env = {**os.environ, "KOLLA_DEMO_WORK": str(work), "KOLLA_DEMO_EXIT": "1",
               "KOLLA_DEMO_PORT": str(podlayout.free_port())}
        demo = [sys.executable, str(PROJECT / "examples/keystone/demo.py")]
        runs = [subprocess.run(demo, env=env, capture_output=True, text=True, timeout=300) for _ in range(2)]
        try:
            for run in runs:
                assert run.returncode == 0, run.stdout + run.stderr
                assert "reused" in run.stdout
                assert f"X-Kolla-Hotfix: {HEADER}" in run.stdout
                assert "-> 201" in run.stdout
            assert re.search(rf"{PATCH_1}\s+applicable", runs[0].stdout)
            assert re.search(rf"{PATCH_1}\s+already-applied", runs[1].stdout)
            password = (work / "admin-password").read_text().strip()
            assert all(password not in run.stdout + run.stderr for run in runs)
        finally:
            shutil.rmtree(work / "root" / podlayout.VENV_REL, ignore_errors=True)
