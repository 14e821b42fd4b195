"""The old homes of the kernels (``spikeformer.functional.kernels``, ``.triton_*``) warn and give the new modules."""

import importlib
import sys

import pytest

from spikeformer.kernels import cpu, triton_bn_lif, triton_lif, triton_pool

MOVED = [("kernels", cpu), ("triton_lif", triton_lif), ("triton_bn_lif", triton_bn_lif), ("triton_pool", triton_pool)]


def _import_fresh(name: str, monkeypatch):
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{name} moved to spikeformer.kernels"):
        return importlib.import_module(name)


@pytest.mark.parametrize("old,new", MOVED, ids=[m for m, _ in MOVED])
def test_old_module_warns_and_is_the_new_one(old, new, monkeypatch):
    assert _import_fresh(f"spikeformer.functional.{old}", monkeypatch) is new
    assert getattr(sys.modules["spikeformer.functional"], old) is new  # ``from spikeformer.functional import old``


def test_kernels_shim_shares_state_and_monkeypatches(monkeypatch):
    old = _import_fresh("spikeformer.functional.kernels", monkeypatch)
    assert old._state is cpu._state  # module state is read from the loader itself
    with monkeypatch.context() as patch:
        patch.setattr(old, "get", lambda: None)  # a patch of the old path reaches the library's module
        assert cpu.get() is None and not cpu.available()
    assert cpu.get.__module__ == "spikeformer.kernels.cpu"  # and its undo leaves the module whole
