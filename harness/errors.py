"""The one error type the CLI turns into a single line and exit code 2, and every exit code."""

EXIT_OK = 0
EXIT_REGRESSION = 1  # harness gate: a rule failed
EXIT_BAD_INPUT = 2  # a HarnessError: the user can fix the task file, a flag, the data, a checkpoint
EXIT_INCONCLUSIVE = 3  # harness gate: no rule failed, but one could not be decided on these examples
EXIT_INTERNAL = 4  # a bug or a broken environment: one line on stderr, the traceback in a log file


class HarnessError(Exception):
    """Bad input the user can fix: a task file, a data file, a model name.

    `where` names the file and, when known, the field or row, so the message reads
    `tasks/x.yaml: strategies.few_shot.k: must be >= 1`.
    """

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


def first_error(e) -> tuple[str, str]:
    """The dotted field and the message of a pydantic ValidationError's first error, worded for a
    task file's author."""
    err = e.errors()[0]
    loc = tuple(p for p in err["loc"]
                if p not in ("str", "HubSplit", "str-constraint", "local", "local_options", "hosted"))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see docs/task-reference.md)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    where = ".".join(str(p) for p in loc if not str(p).startswith("function-"))
    # A validator on a whole model reports its own field as "field: message".
    if not where and ": " in msg:
        field, msg = msg.split(": ", 1)
        return field, msg
    return where, msg
