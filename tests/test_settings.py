"""The one settings object: defaults of the locations, blank values, the environment read afresh, the old name."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

from spikeformer.settings import FASHION_MNIST_DEFAULT_ROOT, Settings, get_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HOME", "MODEL_REPOSITORY", "DATABASE_URL", "MIGRATIONS_DIR", "FASHION_MNIST", "LAVA_PYTHON"):
        monkeypatch.delenv(f"SPIKEFORMER_{name}", raising=False)
    return monkeypatch


def test_locations_default_under_home(clean_env):
    settings = get_settings()
    assert settings.home == Path("var") and settings.model_repository == Path("var") / "models"
    assert settings.database_url is None and settings.migrations_dir is None
    assert settings.fashion_mnist_root == FASHION_MNIST_DEFAULT_ROOT
    clean_env.setenv("SPIKEFORMER_HOME", "/srv/spikeformer")
    assert get_settings().model_repository == Path("/srv/spikeformer/models")  # read afresh on every call
    assert get_settings(model_repository="models").model_repository == Path("models")


def test_blank_values_mean_unset(clean_env):
    for name in ("HOME", "MODEL_REPOSITORY", "DATABASE_URL", "MIGRATIONS_DIR", "FASHION_MNIST", "LAVA_PYTHON"):
        clean_env.setenv(f"SPIKEFORMER_{name}", "  ")
    settings = get_settings()
    assert settings.home == Path("var") and settings.model_repository == Path("var") / "models"
    assert (settings.database_url, settings.migrations_dir, settings.fashion_mnist, settings.lava_python) == (None,) * 4
    clean_env.setenv("SPIKEFORMER_DATABASE_URL", " sqlite:///x.db ")
    assert get_settings().database_url == "sqlite:///x.db"


def test_sqlite_url_is_absolute_under_home(clean_env, tmp_path):
    url = Settings(home=tmp_path / "home").sqlite_url()
    assert url == f"sqlite:///{tmp_path / 'home' / 'spikeformer.db'}" and (tmp_path / "home").is_dir()


def test_the_old_service_settings_module_warns_and_forwards(clean_env):
    sys.modules.pop("spikeformer.serve.settings", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("spikeformer.serve.settings")
    assert any(issubclass(w.category, DeprecationWarning) and "spikeformer.settings" in str(w.message) for w in caught)
    assert old.ServiceSettings is Settings
    assert old.DEFAULT_MODEL_REPOSITORY == Path("var") / "models"
