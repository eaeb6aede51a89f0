"""Training on tpt's shards: a Composer Trainer fed the weighted MDS streams, tokenized and packed.

Read in this order: `config` (the YAML), `data` (streams -> tokens -> packed
sequences), `model` (the HF causal LM and its checks), `trainer` (the
assembly), `sample_log` (which samples each batch saw). `python -m tpt.train
YAML [key=value ...]` is the entry point Composer's launcher runs on every GPU.
"""
