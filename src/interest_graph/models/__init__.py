"""Graph models: LightGCN, the text-aware graph model, graph filters, training."""
