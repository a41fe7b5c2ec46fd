"""DSI and SE-DSI: docid schemes, training views and Lightning training (not built yet)."""
