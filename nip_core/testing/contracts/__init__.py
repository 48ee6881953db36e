"""Contract test suites that plugins subclass to check their components.

Each suite is a plain class whose ``test_*`` methods pytest collects once a test
module subclasses it (with a name starting with ``Test``) and supplies the factory
the suite asks for. Import the submodule you need (they import torch and pytest).
"""
