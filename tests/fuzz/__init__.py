"""The coverage-guided fuzz target (target.py), its atheris runner (run.py) and seed corpus."""
