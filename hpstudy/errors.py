"""The exceptions the CLI turns into one line and an exit code: bad input, no champion, a full
disk."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a study file, a flag, missing data): the CLI prints it and exits with 2."""


class ConfigError(UserError):
    """A wrong value in a study file: names the file, the key, what was expected and given."""

    def __init__(self, key: str, expected: str, given: object, fix: str = "", path: str = ""):
        self.key, self.expected, self.given, self.fix, self.path = key, expected, given, fix, path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        given = self.given if isinstance(self.given, str) else repr(self.given)
        text = f"{where}{self.key}: expected {self.expected}, given {given}."
        return f"{text} {self.fix}" if self.fix else text

    def within(self, prefix: str = "", path: str = "") -> ConfigError:
        """The same error with its key put under `prefix` and the file named."""
        key = f"{prefix}.{self.key}" if prefix else self.key
        return ConfigError(key, self.expected, self.given, self.fix, path or self.path)


class NoChampion(UserError):
    """No trial qualifies as champion (none completed, or none beat the floor): exit code 3."""

    exit_code, label = 3, "no champion"  # the CLI's exit code and the words it prints first


class DiskFull(Exception):
    """A store or the artifact folder has no space left: bad weather, not a crash (exit 6).

    `message` says which store or folder, the space left and the fix; `reason` is the short
    form a trial's record and run keep ("disk full: the MLflow store ...").
    """

    exit_code, label = 6, "disk full"  # the CLI's exit code (README "Commands") and words

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason
