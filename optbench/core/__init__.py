"""The torch-free floor: errors, the config schema and loader, identity, problems, metrics."""
