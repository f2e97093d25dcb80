"""The built-in strategies, one module (or folder) each. They are found through the core's registry
(harness/registry.py), never imported by the core directly."""
