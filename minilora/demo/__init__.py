"""``minilora demo``: every fine-tuning method on the same pre-trained GPT, under the same budget, in one table.

See run.py for the pipeline, methods.py for the methods and their learning rates, measure.py for how
each column is measured, and docs/demo.md.
"""

from minilora.demo.config import DemoConfig, default_cache_dir
from minilora.demo.methods import METHOD_NAMES, METHODS, Method, parse_methods
from minilora.demo.report import MethodResult
from minilora.demo.run import DemoResult, parameter_arithmetic, run_demo

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "DemoConfig",
    "DemoResult",
    "Method",
    "MethodResult",
    "default_cache_dir",
    "parameter_arithmetic",
    "parse_methods",
    "run_demo",
]
