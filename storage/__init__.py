"""spark.storage — see docs/ARCHITECTURE.md."""

if __name__ != "spark.storage":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.storage'; import it under that name")
