"""Names that moved keep working for one release, with a DeprecationWarning that says where they live now."""

from __future__ import annotations

import importlib
import types

import pytest

from spikeformer._deprecation import moved_names

STORE_KINDS = ("ApiKey", "Incident", "InferenceRecord", "Job", "ModelVersion", "Settings")
STORE_MODULES = ("api_keys", "incidents", "inference_records", "jobs", "model_versions", "settings")


def test_moved_name_warns_and_forwards():
    getattr_ = moved_names("old.place", {"sqrt": "math", "root": "math:sqrt"})
    import math

    with pytest.warns(DeprecationWarning, match=r"old\.place\.sqrt moved to math; import it from there"):
        assert getattr_("sqrt") is math.sqrt
    with pytest.warns(DeprecationWarning, match=r"old\.place\.root moved to math\.sqrt"):
        assert getattr_("root") is math.sqrt


def test_unknown_name_is_an_attribute_error():
    module = types.ModuleType("old.place")
    module.__getattr__ = moved_names("old.place", {"sqrt": "math"})
    with pytest.raises(AttributeError, match="module 'old.place' has no attribute 'nothing'"):
        module.nothing  # noqa: B018
    assert not hasattr(module, "nothing")


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_store_classes_keep_their_repository_names(kind):
    store = importlib.import_module("spikeformer.store")
    with pytest.warns(
        DeprecationWarning, match=f"spikeformer.store.{kind}Repository moved to spikeformer.store.{kind}Store"
    ):
        assert getattr(store, f"{kind}Repository") is getattr(store, f"{kind}Store")


@pytest.mark.parametrize(("module", "kind"), zip(STORE_MODULES, STORE_KINDS, strict=True))
def test_store_modules_keep_their_repository_names(module, kind):
    mod = importlib.import_module(f"spikeformer.store.{module}")
    with pytest.warns(DeprecationWarning, match=f"{kind}Repository moved to spikeformer.store.{module}.{kind}Store"):
        assert getattr(mod, f"{kind}Repository") is getattr(mod, f"{kind}Store")


def test_moved_module_warns_and_returns_the_new_module():
    from spikeformer._deprecation import moved_module

    with pytest.warns(DeprecationWarning, match=r"old\.json moved to json; import it from there"):
        assert moved_module("old.json", "json") is importlib.import_module("json")
