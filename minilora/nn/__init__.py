"""minilora.nn: the module system, layers, attention and the GPT models."""

from minilora.nn.module import LoadResult, Module, ModuleDict, ModuleList, Parameter, StateDictError

__all__ = ["LoadResult", "Module", "ModuleDict", "ModuleList", "Parameter", "StateDictError"]
