"""Shared pytest configuration: fixture plugins for the real components devcluster runs."""

pytest_plugins = ["devcluster.pytest_plugin", "devcluster.pytest_registries"]
