"""Generation speed: the harness against plain transformers `generate` and lm-evaluation-harness
0.4.13's `generate_until`, on the same prompts, greedy, the same token budget and batch size.

The prompts are the harness's own: one arm of a shipped short-answer task (default: countries'
zero_shot, the chat template applied) renders the first --limit eval examples, sorted by prompt
length and cut into batches as `harness compare` runs them. Three tools generate for them:

- harness: `TransformersBackend.generate` batch by batch, as the runner calls it (its prefix cache
  emptied at the start of each repeat, so the first batch builds it as in a fresh run);
- generate: `model.generate` on the same model, the same batches, left-padded, no prefix cache,
  the stop strings (if any) as `stop_strings`;
- lm-eval: `HFLM(pretrained=<the model's folder>, dtype=float32).generate_until` over all the
  prompts as contexts, `until` = the stop strings, `do_sample: False`, `max_gen_toks`; lm-eval
  sorts and batches them itself (longest first) at the same batch size.

Each tool's text is compared after the same normalisation as the harness applies to its own: cut
at the first stop string (`until_stop`) and stripped. lm-eval already cuts at its `until` (the stop
strings plus the end-of-turn token) and decodes without special tokens; plain generate's new tokens
are decoded without special tokens. Prints how many of the N answers are identical for each pair
(exit status 1 unless all are), the median wall and CPU seconds per example of each tool over --repeats (the
tools run in turn within each repeat, their order rotated, so load from other processes falls on
all of them) and the ratios against the issue 29 targets.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/speed_generate.py
        [--task benchmarks/tasks/countries.yaml] [--arm zero_shot] [--limit 96] [--batch-size 8]
        [--max-new-tokens 16] [--stop STR ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from vs_lm_eval import OFFLINE  # noqa: E402  (benchmarks/ is the script's folder, hence on sys.path)

from harness.measure import timer

TARGETS = {"generate": 1.0, "lm-eval": 1.2}  # issue 29: harness speed-up over each, at least


def harness_tool(backend, batches, max_new_tokens, stop):
    backend._prefix, backend._prefix_cache = [], None  # a fresh run builds its prefix cache
    gens = [g for batch in batches for g in backend.generate(batch, max_new_tokens, stop=stop)]
    harness_tool.output_tokens = [g.output_tokens for g in gens]
    return [g.text for g in gens]


def plain_tool(backend, batches, max_new_tokens, stop):
    """transformers' generate as its documentation shows it: a left-padded batch, greedy."""
    from harness.backends.base import until_stop

    model, tok = backend.model, backend.tokenizer
    texts = []
    for batch in batches:
        enc = tok([p.text for p in batch], add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
        extra = {"stop_strings": list(stop), "tokenizer": tok} if stop else {}
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                             **extra)
        for row in out[:, enc["input_ids"].shape[1]:]:
            texts.append(until_stop(tok.decode(row, skip_special_tokens=True), stop).strip())
    return texts


def lm_eval_tool(lm, batches, max_new_tokens, stop):
    from lm_eval.api.instance import Instance

    from harness.backends.base import until_stop

    kwargs = {"until": list(stop), "do_sample": False, "max_gen_toks": max_new_tokens}
    requests = [Instance(request_type="generate_until", doc={}, arguments=(p.text, dict(kwargs)), idx=0)
                for batch in batches for p in batch]
    return [until_stop(s, stop).strip() for s in lm.generate_until(requests, disable_tqdm=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=str(Path(__file__).parent / "tasks" / "countries.yaml"))
    parser.add_argument("--arm", default="zero_shot", help="the arm whose prompts are generated for")
    parser.add_argument("--limit", type=int, default=96, help="first N eval examples (default 96)")
    parser.add_argument("--batch-size", type=int, help="default: the task's limits.batch_size")
    parser.add_argument("--max-new-tokens", type=int, help="default: the task's limits.max_new_tokens")
    parser.add_argument("--stop", nargs="*", help="stop strings (default: the task's limits.stop)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each tool; times are medians")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--show", type=int, default=5, help="print this many differing answers")
    args = parser.parse_args()
    os.environ.update(OFFLINE)

    import torch
    from lm_eval.models.huggingface import HFLM

    from harness.backends.local import resolve_model
    from harness.compare import check_input
    from harness.runner import rendered

    if args.threads:
        torch.set_num_threads(args.threads)
    checked = check_input(args.task, strategies=[args.arm], limit=args.limit)
    task, data = checked.task, checked.data
    backend = checked.backends[task.config.model]
    arm_task = task.for_arm(task.arms[args.arm])
    limits = arm_task.config.limits
    size = args.batch_size or (limits.batch_size if limits.batch_size != "auto" else 8)
    max_new_tokens = args.max_new_tokens or limits.max_new_tokens
    stop = tuple(limits.stop if args.stop is None else args.stop)
    strategy = checked.built[args.arm]
    strategy.prepare(data, backend)
    ordered = rendered(arm_task, strategy, backend, data.eval)  # the runner's order
    prompts = [r.prompt for r in ordered]
    batches = [prompts[i:i + size] for i in range(0, len(prompts), size)]
    device = str(backend.device)
    lm = HFLM(pretrained=resolve_model(task.config.model, task.path.parent), dtype=str(backend.model.dtype)
              .removeprefix("torch."), device=device, batch_size=size)
    n = len(prompts)
    tokens = statistics.mean(p.n_tokens for p in prompts)
    print(f"{task.config.name}/{args.arm}: {n} prompts ({tokens:.0f} tokens on average), model {task.config.model} "
          f"({backend.model.dtype}, {device}, {torch.get_num_threads()} threads), batch {size}, "
          f"max_new_tokens {max_new_tokens}, stop {list(stop)}, {args.repeats} repeat(s)", flush=True)

    tools = {"harness": lambda: harness_tool(backend, batches, max_new_tokens, stop),
             "generate": lambda: plain_tool(backend, batches, max_new_tokens, stop),
             "lm-eval": lambda: lm_eval_tool(lm, batches, max_new_tokens, stop)}
    names = list(tools)
    seconds = {name: [] for name in names}
    cpu = {name: [] for name in names}  # process CPU seconds: less sensitive than wall time to other jobs
    texts = {}
    with torch.inference_mode():
        tools["generate"]()  # warm-up: the first calls of a process pay for allocations
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.process_time()
                with timer() as elapsed:
                    texts[name] = tools[name]()
                seconds[name].append(elapsed.s / n)
                cpu[name].append((time.process_time() - start) / n)
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.4f} s/ex" for k, v in seconds.items()), flush=True)

    out = harness_tool.output_tokens
    longest = [max(out[i:i + size]) for i in range(0, n, size)]
    print(f"answer tokens: {statistics.mean(out):.1f} per example on average; the longest of its batch: "
          f"{statistics.mean(longest):.1f} on average")
    print(f"\n{'tool':<10} {'s/ex':>8} {'harness speed-up':>17} {'cpu s/ex':>9} {'cpu speed-up':>13}  (medians)")
    median = {name: statistics.median(v) for name, v in seconds.items()}
    cpu_median = {name: statistics.median(v) for name, v in cpu.items()}
    for name in names:
        print(f"{name:<10} {median[name]:8.4f} {median[name] / median['harness']:16.2f}x {cpu_median[name]:9.4f} "
              f"{cpu_median[name] / cpu_median['harness']:12.2f}x")
    ok = True
    for other in names[1:]:
        same = [i for i in range(n) if texts["harness"][i] == texts[other][i]]
        ok &= len(same) == n
        print(f"identical answers, harness and {other}: {len(same)}/{n}")
        for i in [i for i in range(n) if i not in same][:args.show]:
            print(f"  {ordered[i].example.id}: harness {texts['harness'][i]!r}, {other} {texts[other][i]!r}")
    for other, target in TARGETS.items():
        ratio = median[other] / median["harness"]
        print(f"harness speed-up over {other}, wall: {ratio:.2f}x (target >= {target}x: "
              f"{'met' if ratio >= target else 'MISSED'}), cpu: {cpu_median[other] / cpu_median['harness']:.2f}x")
    load, cores = os.getloadavg()[0], os.cpu_count()
    if load > cores:
        print(f"note: load average {load:.1f} on {cores} cores at the end: other processes competed")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
