"""spark.supervision — see docs/ARCHITECTURE.md."""

if __name__ != "spark.supervision":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.supervision'; import it under that name")
