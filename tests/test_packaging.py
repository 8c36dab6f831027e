"""The built distribution carries every package and the twistd plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_every_package_and_the_plugin(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("tinychat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/tinychat_plugin.py" in names
    assert "twisted/plugins/__init__.py" not in names  # never shadow Twisted's own package
    packages = {p.parent.relative_to(ROOT / "src").as_posix()
                for p in (ROOT / "src" / "tinychat").rglob("__init__.py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from setup.cfg's packages"
