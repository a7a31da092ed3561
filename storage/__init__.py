"""spark.storage — see docs/ARCHITECTURE.md."""

if __name__ != "spark.storage":  # pragma: no cover - guards against `import storage` from a checkout
    raise ImportError("this folder is installed as 'spark.storage'; import it under that name")
