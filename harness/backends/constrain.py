"""Constrained decoding for a local model: a JSON Schema compiled by xgrammar into a transformers
logits processor that masks, at every step, the tokens the schema does not allow next.

xgrammar was picked over outlines and lm-format-enforcer by speed on CPU and by how little it asks
of transformers (benchmarks/speed_constrained.py; figures in docs/structured.md). A schema is
compiled once per tokenizer; the processor holds one matcher per row and serves one `generate` call."""

from __future__ import annotations

import functools
import json


@functools.cache
def _compiler(tokenizer, vocab_size: int):
    import xgrammar as xgr

    return xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size))


@functools.cache
def _compiled(tokenizer, vocab_size: int, schema_json: str):
    return _compiler(tokenizer, vocab_size).compile_json_schema(schema_json)


def logits_processor(model, tokenizer, schema: dict):
    """A fresh logits processor for one `model.generate` call that keeps every row's answer within
    `schema`."""
    import xgrammar as xgr

    # The model's vocabulary can be larger than the tokenizer's (padded embedding rows): the mask must
    # cover every logit.
    compiled = _compiled(tokenizer, model.config.vocab_size, json.dumps(schema, sort_keys=True))
    return xgr.contrib.hf.LogitsProcessor(compiled)
