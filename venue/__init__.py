"""spark.venue — see docs/ARCHITECTURE.md."""

if __name__ != "spark.venue":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.venue'; import it under that name")
