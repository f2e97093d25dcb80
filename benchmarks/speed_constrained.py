"""Constrained decoding on CPU: three libraries that turn a JSON Schema into a transformers logits
processor (xgrammar, outlines, lm-format-enforcer), against the same prompts unconstrained.

The default model (SmolLM2-135M-Instruct) extracts the structured elements task's four fields from
the first eval documents, greedy, in batches, with `model.generate` as harness/backends/local.py calls
it. Per library: the one-time cost (the tokenizer's vocabulary and the schema compiled), then ms per
generated token, median over the repeats, against the unconstrained median measured in the same run
(the overhead), and how many answers are schema-valid.

    .venv/bin/python benchmarks/speed_constrained.py [--examples 16] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from harness.measure import timer

TASK = Path(__file__).parent / "tasks" / "elements_fields.yaml"


def xgrammar_processor(model, tokenizer, schema: dict):
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(schema))
    return lambda: {"logits_processor": [xgr.contrib.hf.LogitsProcessor(compiled)]}


def outlines_processor(model, tokenizer, schema: dict):
    import outlines
    from outlines.backends import get_json_schema_logits_processor

    wrapped = outlines.from_transformers(model, tokenizer)
    processor = get_json_schema_logits_processor("outlines_core", wrapped, json.dumps(schema))

    def fresh():
        processor.reset()
        return {"logits_processor": [processor]}
    return fresh


def lmfe_processor(model, tokenizer, schema: dict):
    from lmformatenforcer import JsonSchemaParser
    from lmformatenforcer.integrations.transformers import (
        build_token_enforcer_tokenizer_data,
        build_transformers_prefix_allowed_tokens_fn,
    )

    data = build_token_enforcer_tokenizer_data(tokenizer)
    return lambda: {"prefix_allowed_tokens_fn": build_transformers_prefix_allowed_tokens_fn(
        data, JsonSchemaParser(schema))}


LIBRARIES = {"xgrammar": xgrammar_processor, "outlines": outlines_processor, "lm-format-enforcer": lmfe_processor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES))
    args = parser.parse_args()

    import jsonschema
    import torch

    from harness.data import load_data
    from harness.prompting import build_messages, render
    from harness.registry import load_backend
    from harness.task import load_task

    task = load_task(TASK)
    cfg = task.config
    schema = cfg.answer_schema
    backend = load_backend(cfg.model, TASK.parent)
    model, tok = backend.model, backend.tokenizer
    examples = load_data(task).eval[: args.examples]
    prompts = [render(task, backend, build_messages(task, ex, backend)).text for ex in examples]
    batches = [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]
    validator = jsonschema.Draft202012Validator(schema)

    def run(extra) -> tuple[float, int]:
        """ms per generated token over every batch, and the schema-valid answers."""
        ms, tokens, valid = 0.0, 0, 0
        for batch in batches:
            enc = tok(batch, return_tensors="pt", padding=True)
            with torch.inference_mode(), timer() as elapsed:
                out = model.generate(**enc, max_new_tokens=cfg.limits.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, **extra())
            new = out[:, enc["input_ids"].shape[1]:]
            for row in new.tolist():
                ends = [j for j, t in enumerate(row) if t in (tok.eos_token_id, tok.pad_token_id)]
                row = row[: ends[0] + 1] if ends else row
                tokens += len(row)
                try:
                    valid += validator.is_valid(json.loads(tok.decode(row, skip_special_tokens=True)))
                except json.JSONDecodeError:
                    pass
            ms += elapsed.s * 1000
        return ms / tokens, valid

    run(lambda: {})  # warm-up
    base = statistics.median(run(lambda: {})[0] for _ in range(args.repeats))
    _, base_valid = run(lambda: {})
    print(f"{len(prompts)} prompts, batch {args.batch}, max_new_tokens {cfg.limits.max_new_tokens}, "
          f"median of {args.repeats} runs, torch threads {torch.get_num_threads()}")
    print(f"{'unconstrained':20} {base:6.2f} ms/token               schema-valid {base_valid}/{len(prompts)}")
    for name in args.libraries:
        try:
            with timer() as setup:
                extra = LIBRARIES[name](model, tok, schema)
        except ImportError as e:  # lm-format-enforcer 0.11 imports what transformers 5 no longer has
            print(f"{name:20} does not load: {str(e).splitlines()[0]}")
            continue
        run(extra)  # warm-up
        per_token = [run(extra) for _ in range(args.repeats)]
        med = statistics.median(ms for ms, _ in per_token)
        print(f"{name:20} {med:6.2f} ms/token  x{med / base:4.2f}  setup {setup.s:5.2f} s  "
              f"schema-valid {per_token[-1][1]}/{len(prompts)}")


if __name__ == "__main__":
    main()
