# Beam's --setup_file (Dataflow workers) needs a setup.py; everything is in pyproject.toml.
from setuptools import setup

setup()
