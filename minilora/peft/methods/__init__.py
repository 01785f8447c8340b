"""One module per fine-tuning method; each registers itself (minilora.peft.registry imports them all).

To add a method, add a file here that defines its config (or imports it from the layer module),
its injection function and ``register(Method(...))``; see CONTRIBUTING.md, "Writing a fine-tuning method".
"""
