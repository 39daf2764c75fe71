"""One module per transport, all on the same hub, history and policy."""
