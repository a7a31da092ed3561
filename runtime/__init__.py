"""spark.runtime — see docs/ARCHITECTURE.md."""

if __name__ != "spark.runtime":  # pragma: no cover - guards against `import runtime` from a checkout
    raise ImportError("this folder is installed as 'spark.runtime'; import it under that name")
