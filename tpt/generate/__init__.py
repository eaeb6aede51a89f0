"""Thinking generation: prompts, backends, post-processing and the resumable result store."""
