"""The wheel works outside the checkout: built from the sources, installed into a fresh virtual environment (from the
local wheels and indexes pip is configured with), and run from a folder that is not the checkout.

About 2 minutes on 2 cores: building the wheel (seconds), installing it with its dependencies (torch is pinned to the
release ``make setup`` installs, 2.13.0 CPU, so pip takes it from the local wheel instead of a CUDA build with its
NVIDIA libraries), and compiling the CPU kernels in a fresh extension folder (about 30 s). Select it with
``pytest -m wheel``, leave it out with ``-m "not wheel"``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
# What `make setup` installs first (Makefile): the CPU build on local disk.
TORCH_PIN = "torch==2.13.0"
# Everything a build reads besides src/. The build runs on a copy, so that no stale `build/` folder of the checkout
# (setuptools keeps files there that were since deleted) can slip into the wheel.
BUILD_INPUTS = ("pyproject.toml", "README.md")
INSTALL_TIMEOUT_S = 600

# Run inside the installed environment: where the package, its migrations and its compiled kernels come from.
PROBE = """
import json
from pathlib import Path

import spikeformer
from spikeformer.store.database import migrations_dir

try:
    from spikeformer.kernels import cpu as kernels
except ImportError:  # the loader's older home
    from spikeformer.functional import kernels

module = kernels.get()
print(json.dumps({
    "package": spikeformer.__file__,
    "migrations": str(migrations_dir()),
    "kernels_sources": sorted(str(p) for p in (Path(kernels.__file__).parent / "csrc").glob("*.cpp")),
    "kernels_module": getattr(module, "__file__", None),
    "kernels_reason": kernels.unavailable_reason(),
}))
"""


@dataclass(frozen=True)
class Installed:
    """The wheel and the virtual environment it is installed in."""

    wheel: Path
    venv: Path
    work: Path  # the current folder of every command: a temporary folder outside the checkout
    home: Path  # SPIKEFORMER_HOME
    extensions: Path  # TORCH_EXTENSIONS_DIR: the kernels are compiled afresh, not taken from the user's cache
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )


def _check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so")
    )
    for name in BUILD_INPUTS:
        shutil.copy2(ROOT / name, source / name)
    dist = tmp / "dist"
    _check(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", dist],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    )
    (wheel,) = dist.glob("spikeformer-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(ROOT), "the temporary folder must lie outside the checkout"
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    _check(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SPIKEFORMER_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    home, work, extensions = tmp / "home", tmp / "work", tmp / "torch_extensions"
    work.mkdir()
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",  # as `source venv/bin/activate` would
        "VIRTUAL_ENV": str(venv),
        "SPIKEFORMER_HOME": str(home),
        "TORCH_EXTENSIONS_DIR": str(extensions),
        "PIP_NO_INPUT": "1",
    }
    box = Installed(wheel, venv, work, home, extensions, env)
    # One resolution: the pinned torch from the local wheel folder, every other dependency from the configured indexes.
    _check(box.run(str(venv / "bin" / "pip"), "install", "-q", TORCH_PIN, str(wheel)))
    return box


def test_the_wheel_ships_migrations_and_kernel_sources_but_no_weights(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert not [n for n in names if n.endswith(".safetensors")], "the wheel must ship no weights"
    migrations = {n for n in names if n.startswith("spikeformer/store/migrations/")}
    assert {"spikeformer/store/migrations/env.py", "spikeformer/store/migrations/script.py.mako"} <= migrations
    assert any(n.startswith("spikeformer/store/migrations/versions/") and n.endswith(".py") for n in migrations)
    assert [n for n in names if n.endswith("/csrc/kernels.cpp")], "the C++ kernel sources must be in the wheel"
    assert "spikeformer/serve/static/console.html" in names


def test_cli_migrates_and_lists_models_outside_the_checkout(installed):
    spikeformer = str(installed.venv / "bin" / "spikeformer")
    _check(installed.run(spikeformer, "db", "upgrade"))
    database = installed.home / "spikeformer.db"
    assert database.is_file(), f"the default SQLite database belongs under SPIKEFORMER_HOME ({installed.home})"
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    versions = installed.venv.glob("lib/python*/site-packages/spikeformer/store/migrations/versions/*.py")
    assert any(path.name.startswith(f"{revision}_") for path in versions)

    listed = json.loads(_check(installed.run(spikeformer, "models", "list", "--json")).stdout)
    assert "spikformer-8-384" in {m["name"] for m in listed["models"]}


def test_the_installed_package_migrations_and_kernels_are_used(installed):
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler here: the compiled CPU kernels cannot be built (the plain-torch path is used)")
    probe = json.loads(_check(installed.run(str(installed.venv / "bin" / "python"), "-c", PROBE)).stdout)
    venv = installed.venv.resolve()
    package = Path(probe["package"]).resolve()
    assert package.is_relative_to(venv) and not package.is_relative_to(ROOT), probe["package"]
    assert Path(probe["migrations"]).resolve() == package.parent / "store" / "migrations"
    assert probe["kernels_sources"] and all(Path(p).resolve().is_relative_to(venv) for p in probe["kernels_sources"])
    assert probe["kernels_module"] is not None, f"compiled CPU kernels unavailable: {probe['kernels_reason']}"
    assert Path(probe["kernels_module"]).resolve().is_relative_to(installed.extensions.resolve())
