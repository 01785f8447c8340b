"""Test helpers shipped with minilora: the strict CuPy stand-in (``minilora.testing.strict``)."""
