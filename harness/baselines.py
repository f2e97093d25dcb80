"""Fair baselines: the cheap prompting arms a fine-tuned arm must be held against, added by the
harness when the task file lacks them.

A baseline weaker than it needs to be makes "fine-tune" the answer by construction: a chat template
can leave a small model answering one label for every example while the same model, prompted in
plain text as lm-evaluation-harness prompts it, does the task. So beside every model that an arm
fine-tunes, compare runs the task's own template in the raw format and, for classification, the
task's prompt calibrated (for short answers, a plain `Question:`/`Answer:` framing when the template
is the bare question; for structured tasks, the task's prompt decoded under its schema). They are
zero-shot arms: a small share of a compare's time, and nothing at all when the task file already has
an arm of the same configuration. A raw prompt needs a place for the answer: a classification
template that does not end in one (a colon, as `Topic:` does) gets lm-evaluation-harness's usual
`Answer:` line; and when the task file has a raw arm of its own, the raw prompt calibrated is that
arm's prompt, the author's fairer choice, calibrated.

`decision.baselines: none` turns this off; the verdict then names the baselines not run."""

from __future__ import annotations

import re

from harness.armspec import ArmSpec, parse_arm
from harness.config import HostedModel, Task, model_label

# A template that is the input column alone: the question as it is, which a plain Question/Answer
# framing turns into lm-evaluation-harness's usual short-answer prompt.
_BARE = re.compile(r"\s*\{\{\s*(\w+)\s*\}\}\s*")


# A template ending where its answer goes ("Topic:", "Answer:").
_CUE = re.compile(r":\s*$")


def _entries(config: Task, own_raw: dict | None = None) -> dict[str, dict]:
    """The fair baselines of a task on one model, as task-file entries; `own_raw`, the prompt settings
    of the task file's own raw arm on that model, if it has one (`_own_raw`)."""
    raw: dict = {"format": "raw"}
    template = config.prompt.template
    bare = _BARE.fullmatch(template)
    if config.type == "short_answer" and bare and bare.group(1) == config.fields.input:
        raw["template"] = f"Question: {{{{ {config.fields.input} }}}}\nAnswer:"
    elif config.type == "classification" and not _CUE.search(template):
        # After an instruction sentence, a label is no likely continuation of plain text: on BBC topics
        # the bare template in raw answered 'politics' for all 150 articles (17.3%), with this line 31.3%.
        raw["template"] = template.rstrip() + "\nAnswer:"
    out = {"raw": {"prompt": raw}} if raw != {"format": config.prompt.format} else {}
    # Calibration divides label log-likelihoods: an arm told to generate its label has none. Both
    # prompts calibrated: a small model that a prompt leaves on one label is often unstuck by it, and
    # it costs three content-free prompts (the examples' scores are the uncalibrated twin's).
    if config.type == "classification" and not config.prompt.calibrate and config.prompt.scoring != "generate":
        out["calibrated"] = {"prompt": {"calibrate": True}}
        if "raw" in out:
            out["raw_calibrated"] = {"prompt": {**(raw if own_raw is None else own_raw), "calibrate": True}}
    # Against "fine-tune to get our JSON", the modern alternative: the same prompt decoded under the
    # schema, so an arm cannot win on format alone by construction.
    if config.type == "structured":
        out["constrained"] = {"decoding": {"json_schema": True}}
    return out


def _name(base: str, model, config: Task, taken: set[str]) -> str:
    name = base if model == config.model else f"{base}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', model_label(model))}"
    while name in taken:
        name += "_auto"
    return name


def on_model(config: Task, model, taken: set[str], where: str, own_raw: dict | None = None) -> list[ArmSpec]:
    """The fair baselines of a task on one local model, named apart from `taken`."""
    out = []
    for base, entry in _entries(config, own_raw).items():
        name = _name(base, model, config, taken | {a.name for a in out})
        out.append(parse_arm(name, entry if model == config.model else {**entry, "model": model}, config, where))
    return out


def _plain(arm: ArmSpec, model) -> bool:
    """A prompting arm on `model`: no weights, passages, demonstrations or plugin."""
    return arm.model == model and not (arm.weights or arm.context or arm.demos or arm.plugin)


def _prompt(arm: ArmSpec, config: Task) -> dict:
    """Every prompt setting of an arm: the task's, overridden by the arm's own."""
    return {**config.prompt.model_dump(), **arm.prompt}


def _own_raw(config: Task, arms: list[ArmSpec], model) -> dict | None:
    """The prompt settings of the task file's first plain raw arm on `model` that ranks the labels by
    log-likelihood uncalibrated, which a calibrated baseline can start from (None: it has none)."""
    for arm in arms:
        prompt = _prompt(arm, config)
        if (_plain(arm, model) and not arm.decoding and prompt["format"] == "raw" and not prompt["calibrate"]
                and prompt["scoring"] != "generate"):
            return arm.prompt
    return None


def _covers(arm: ArmSpec, baseline: ArmSpec, config: Task) -> bool:
    """Whether a prompting arm of the task already is that baseline in kind: on the same model, with
    no weights, passages or demonstrations, the baseline's decoding, and its prompt format and calibration (any
    template: a raw arm with a template of its own is the task author's fairer choice)."""
    if not _plain(arm, baseline.model):
        return False
    if bool(arm.decoding) != bool(baseline.decoding):
        return False
    prompt = _prompt(arm, config)
    return all(prompt[key] == value for key, value in baseline.prompt.items() if key != "template")


def fair_baselines(config: Task, arms: list[ArmSpec], where: str) -> tuple[list[ArmSpec], dict[str, dict]]:
    """The fair baselines that `arms` lack beside each local model an arm fine-tunes (a fine-tuned
    small model against a big hosted one is held against its own model prompted fairly too).
    Returns them as arms to run (none when `decision.baselines` is none), and as task-file entries
    by name for the verdict to name (the ones not run)."""
    models = {a.model for a in arms if a.weights is not None}
    taken = {a.name for a in arms}
    lacking: list[ArmSpec] = []
    # A hosted model's fairest prompt is the task file's business: its requests cost money.
    for model in sorted((m for m in models if not isinstance(m, HostedModel)), key=model_label):
        for spec in on_model(config, model, taken, where, _own_raw(config, arms, model)):
            if not any(_covers(arm, spec, config) for arm in arms):
                lacking.append(spec)
                taken.add(spec.name)
    if config.decision.baselines == "none":
        return [], {spec.name: spec.params for spec in lacking}
    return lacking, {}
