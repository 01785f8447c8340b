"""minilora.functional (imported as F): neural-network ops on Tensors."""
