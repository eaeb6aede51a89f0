"""Training on tpt's shards: a Composer Trainer fed the weighted MDS streams, tokenized and packed.

Read in this order: `config` (the YAML), `data` (streams -> tokens -> packed
sequences), `model` (the HF causal LM and its checks), `trainer` (the
assembly), `sample_log` (which samples each batch saw). Evaluation: `evaluate`
(eval sets and the eval log), `tasks` (GSM8K, scored as lm-eval does), `heldout`
(held-out raw documents as MDS). After training: `export` (a checkpoint as a
Hugging Face directory), `experiment` (vanilla vs TPT: the split and the report).
`python -m tpt.train YAML [key=value ...]` is the entry point Composer's launcher
runs on every GPU.
"""
