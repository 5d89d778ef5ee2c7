"""Studies: the core path run over many texts and settings, writing records as they go."""
