"""Hydra configs of tpulearn (YAML files; this module only makes them importable)."""
