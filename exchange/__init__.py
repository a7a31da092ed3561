"""spark.exchange — see docs/ARCHITECTURE.md."""

if __name__ != "spark.exchange":  # pragma: no cover - guards against `import exchange` from a checkout
    raise ImportError("this folder is installed as 'spark.exchange'; import it under that name")
