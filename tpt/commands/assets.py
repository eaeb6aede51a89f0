"""Prepare the embedded teacher (SmolLM2-135M-Instruct) once, so later runs load it in seconds."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    from tpt.assets import embedded_gguf, embedded_teacher_dir

    print(f"embedded teacher: {embedded_gguf()}")
    print(f"converted copy:   {embedded_teacher_dir()}")
    return 0
