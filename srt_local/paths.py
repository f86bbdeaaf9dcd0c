"""Where srt-local keeps its config, models and data.

`SRT_HOME` moves everything under one folder (tests use it); otherwise platformdirs decides.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "srt-local"


def _home() -> Path | None:
    value = os.environ.get("SRT_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))


def models_dir() -> Path:
    return data_dir() / "models"


def default_db_path() -> Path:
    return data_dir() / "srt.duckdb"


def user_models_toml() -> Path:
    return config_dir() / "models.toml"
