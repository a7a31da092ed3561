"""spark.config — the ``spark.toml`` schema, its loader and the environment's secrets."""

if __name__ != "spark.config":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.config'; import it under that name")

from spark.config.errors import ConfigError, Problem
from spark.config.loader import Settings, load, loads
from spark.config.schema import SparkConfig
from spark.config.secrets import Secrets

__all__ = ["ConfigError", "Problem", "Secrets", "Settings", "SparkConfig", "load", "loads"]
