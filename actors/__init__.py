"""spark.actors — see docs/ARCHITECTURE.md."""

if __name__ != "spark.actors":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.actors'; import it under that name")
