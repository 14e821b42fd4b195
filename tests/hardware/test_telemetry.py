"""Hardware status never invents a device: Loihi 2 needs lava-loihi (not lava-nc alone), SpiNNaker a spalloc server."""

from __future__ import annotations

import sys

import pytest

from spikeformer.hardware import loihi2_status, spinnaker_status


def _package(root, dotted: str) -> None:
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        d = root.joinpath(*parts[:i])
        d.mkdir(parents=True, exist_ok=True)
        (d / "__init__.py").touch()
    root.joinpath(*parts[:-1], parts[-1] + ".py").write_text("")


@pytest.fixture
def fake_lava(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "lava" or m.startswith("lava.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_lava_nc_alone_is_not_a_loihi(fake_lava):
    _package(fake_lava, "lava.utils.loihi")  # lava-nc ships this module
    st = loihi2_status()
    assert not st.available and "lava-loihi" in st.reason


def test_lava_loihi_runtime_makes_loihi_available(fake_lava):
    _package(fake_lava, "lava.magma.compiler.subcompilers.nc.ncproc_compiler")
    st = loihi2_status()
    assert st.available and st.temperature_c is None  # no public temperature API: no reading invented


def test_spinnaker_needs_a_spalloc_server(monkeypatch, tmp_path):
    monkeypatch.delenv("SPALLOC_SERVER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not spinnaker_status().available
    monkeypatch.setenv("SPALLOC_SERVER", "spalloc.example")
    st = spinnaker_status()
    assert st.available and st.temperature_c is None
