"""spark.core — see docs/ARCHITECTURE.md."""

if __name__ != "spark.core":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.core'; import it under that name")
