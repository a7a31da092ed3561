"""spark.exchange — see docs/ARCHITECTURE.md."""

if __name__ != "spark.exchange":  # pragma: no cover - bare import
    raise ImportError("this folder is installed as 'spark.exchange'; import it under that name")
