"""spark.runtime — see docs/ARCHITECTURE.md."""

if __name__ != "spark.runtime":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.runtime'; import it under that name")
