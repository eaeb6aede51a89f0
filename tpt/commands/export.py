"""Export a Composer checkpoint as a Hugging Face model directory: `tpt export CHECKPOINT OUT_DIR`.

CHECKPOINT is a `.pt` file (e.g. out/train/tiny-cpu/checkpoints/latest-rank0.pt) or the folder of an FSDP
sharded checkpoint. OUT_DIR gets config.json, model.safetensors and the tokenizer, ready for
  transformers: AutoModelForCausalLM.from_pretrained(OUT_DIR)
  vLLM:         vllm serve OUT_DIR
  lm-eval:      lm_eval --model hf --model_args pretrained=OUT_DIR ...
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="Composer checkpoint: a .pt file or a sharded checkpoint folder")
    parser.add_argument("out_dir", help="the Hugging Face model directory to write (replaced whole once written)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="cast the weights (default: as trained)")


def main(args: argparse.Namespace) -> int:
    from tpt.train.export import export

    print(f"tpt export: {export(args.checkpoint, args.out_dir, args.dtype)}")
    return 0
