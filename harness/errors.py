"""The one error type the CLI turns into a single line and exit code 2."""


class HarnessError(Exception):
    """Bad input the user can fix: a task file, a data file, a model name.

    `where` names the file and, when known, the field or row, so the message reads
    `tasks/x.yaml: strategies.few_shot.k: must be >= 1`.
    """

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")
