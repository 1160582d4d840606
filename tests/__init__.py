# Marks tests/ as a package so that `python3 -m tests.harness.sandbox` and the system tests can import
# tests.harness from the repository root. The C unit tests in tests/unit/ are built by meson, not Python.
