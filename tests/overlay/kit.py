"""Overlay test kit: a real venv as the image, real git patches, the real hook in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from kolla_entry.overlay.apply import OverlayRequest, apply_overlay, check_overlay
from kolla_entry.overlay.build import install_hook
from kolla_entry.patching.engine import PatchRequest
from kolla_entry.patching.report import SeriesReport
from tests.helpers import git_diff, make_tree


@dataclass
class Box:
    """A venv whose site-packages is the image, a patches folder and an overlay folder."""

    root: Path
    python: Path
    site: Path
    patches: Path
    overlay: Path
    _count: int = 0

    def add_patch(self, before: Dict[str, bytes], after: Dict[str, Optional[bytes]], name: str = "") -> Path:
        """Write a real ``git diff`` turning ``before`` into ``after`` as the next patch."""
        self._count += 1
        path = self.patches / (name or f"{self._count:04d}.patch")
        path.write_bytes(git_diff(self.root / "git", before, after))
        return path

    def request(self, **options: object) -> OverlayRequest:
        patch = PatchRequest(target=self.site, patterns=(str(self.patches / "*.patch"),), **options)  # type: ignore[arg-type]
        return OverlayRequest(patch, self.overlay, durable=False)

    def apply(self, **options: object) -> SeriesReport:
        return apply_overlay(self.request(**options))

    def check(self, **options: object) -> SeriesReport:
        return check_overlay(self.request(**options))

    def python_run(self, code: str, *, overlay: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in the venv's interpreter, as the service would (the hook active when ``overlay``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KOLLA_", "PYTHON"))}
        if overlay:
            env["KOLLA_ENTRY_OVERLAY"] = str(self.overlay)
        return subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, env=env,
                              timeout=60, check=False, cwd=self.root)


def make_box(root: Path, image: Dict[str, bytes], *, hook: bool = True, base: str = sys.executable) -> Box:
    """
    A venv (no pip) of the ``base`` interpreter whose site-packages holds ``image``, with the hook
    installed unless told otherwise.
    """
    subprocess.run([base, "-m", "venv", "--without-pip", str(root / "venv")], check=True,
                   capture_output=True)
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    make_tree(site, dict(image))
    python = root / "venv" / "bin" / "python"
    if hook:
        install_hook(site)
        # As an image build does: the hook's bytecode is in the image, so no start writes it there.
        subprocess.run([str(python), "-m", "compileall", "-q", str(site / "kolla_entry_overlay.py")], check=True)
    (root / "patches").mkdir()
    (root / "overlay").mkdir()
    (root / "git").mkdir()
    return Box(root, python, site, root / "patches", root / "overlay")
