"""The top-level package: a fast ``import spikeformer`` with every subpackage reachable as an attribute."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import spikeformer


def _in_fresh_interpreter(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_the_lazy_list_names_every_subpackage_and_top_level_module():
    found = {
        m.name for m in pkgutil.iter_modules([str(Path(spikeformer.__file__).parent)]) if not m.name.startswith("_")
    }
    assert set(spikeformer._SUBMODULES) == found


def test_import_spikeformer_imports_no_subpackage_and_not_torch():
    loaded = _in_fresh_interpreter(
        "import sys, spikeformer; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('spikeformer.')))"
    )
    assert loaded == "[]"


def test_subpackages_resolve_as_attributes_after_a_plain_import():
    code = (
        "import spikeformer\n"
        "f = spikeformer.interop.from_spikingjelly\n"
        "import spikeformer.interop\n"
        "print(f is spikeformer.interop.from_spikingjelly, f.__name__)"
    )
    assert _in_fresh_interpreter(code) == "True from_spikingjelly"
    from spikeformer.energy import profile
    from spikeformer.hardware import compile_model, to_nir
    from spikeformer.interop import from_spikingjelly

    assert spikeformer.interop.from_spikingjelly is from_spikingjelly
    assert spikeformer.hardware.to_nir is to_nir and spikeformer.hardware.compile_model is compile_model
    assert spikeformer.energy.profile is profile
    assert spikeformer.runtime.Runner.__name__ == "Runner"
    assert spikeformer.settings.get_settings is not None and spikeformer.kernels.__name__ == "spikeformer.kernels"


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("create_model", "spikeformer.models"),
        ("list_models", "spikeformer.models"),
        ("load_pipeline", "spikeformer.pipeline"),
    ],
)
def test_top_level_functions_are_lazy_re_exports(name, module):
    code = (
        "import sys, spikeformer\n"
        f"before = {module!r} in sys.modules\n"
        f"f = spikeformer.{name}\n"
        f"print(before, {module!r} in sys.modules, f.__module__.startswith({module!r}))"
    )
    assert _in_fresh_interpreter(code) == "False True True"  # imported on first access, not by `import spikeformer`
    exec(f"from spikeformer import {name} as imported", scope := {})
    assert scope["imported"] is getattr(spikeformer, name) is getattr(importlib.import_module(module), name)


def test_unknown_attributes_raise_a_clear_attribute_error():
    with pytest.raises(AttributeError, match=r"module 'spikeformer' has no attribute 'interopp'.*interop"):
        spikeformer.interopp  # noqa: B018
    assert not hasattr(spikeformer, "no_such_name")
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from spikeformer import no_such_name")


def test_dir_lists_the_public_names_and_every_subpackage():
    names = dir(spikeformer)
    assert {"__version__", "create_model", "list_models", "load_pipeline"} <= set(names)
    assert set(spikeformer._SUBMODULES) <= set(names)
    assert set(spikeformer.__all__) == {"__version__", "create_model", "list_models", "load_pipeline"}
