"""Process settings from environment variables (SHOPFLOOR_*), overridable by command-line flags.

Read once per process (`settings()`); a bad variable is a `SettingsError` whose one line names the variable.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopfloor.config import default_site_path

ENV_PREFIX = "SHOPFLOOR_"


class SettingsError(ValueError):
    """An environment variable that does not hold a valid setting; the message names it."""


class Settings(BaseSettings):
    """Where the site file and the external services are."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    site: Path = Field(default_factory=default_site_path, description="site config file")
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", description="MQTT broker URL")
    influx_url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB /write + /query base URL")
    influx_db: str = Field(default="shopfloor", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    influx_user: str | None = None
    influx_password: str | None = None
    data_dir: Path = Field(default=Path("./shopfloor-data"), description="where agents keep their state")
    db_url: str | None = Field(
        default=None,
        max_length=2048,
        description="SQLAlchemy URL of the business DB (roll-ups); default sqlite:///<data_dir>/shopfloor.db",
    )


def read_settings() -> Settings:
    """Read the environment now; raise SettingsError naming the first bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + "_".join(str(part) for part in first["loc"]).upper()
        raise SettingsError(f"environment variable {name}: {first['msg']}") from None


@functools.cache
def settings() -> Settings:
    """The process's settings, read from the environment the first time they are asked for."""
    return read_settings()
