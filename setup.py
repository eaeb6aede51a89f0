# Beam's --setup_file (Dataflow workers) needs a setup.py; everything else is in pyproject.toml.
from setuptools import find_packages, setup

# The top-level folders engines/ and analysis/ are the packages tpt.engines and tpt.analysis (package-dir).
MAPPED = ("engines", "analysis")
setup(packages=find_packages(include=["tpt", "tpt.*"])
      + [f"tpt.{name}" for name in find_packages(include=[f"{top}{tail}" for top in MAPPED for tail in ("", ".*")])])
