"""Shop data: loaders for real and synthetic shops, validation and quarantine."""
