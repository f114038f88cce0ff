"""optbench: run, sweep and compare PyTorch optimizer experiments from YAML configs."""

__version__ = "0.1.0"
