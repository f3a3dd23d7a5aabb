"""Git branch and ref names as `git check-ref-format --branch` takes them (git-sync checks out
what git accepts; a name git refuses makes every sync fail)."""

from __future__ import annotations

from .reader import ConfigError

RULE = (
    "a git branch or ref: no space, '~', '^', ':', '?', '*', '[', '\\\\' or control character, no '..' or '@{', "
    "no part starting with '.' or ending with '.lock', not starting with '-' or '/', not ending with '/' or '.', "
    "no '//', not '@'"
)


def ref_problem(name: str) -> str | None:
    """Why git refuses `name` as a branch, or None (git's check_refname_format, and --branch's '-')."""
    if not name:
        return "it is empty"
    if name == "@":
        return "'@' alone is not a ref"
    if name.startswith("-"):
        return "it starts with '-'"
    bad = next((c for c in name if ord(c) < 0x20 or ord(c) == 0x7F or c in " ~^:?*[\\"), None)
    if bad is not None:
        return f"it holds {bad!r}"
    if ".." in name:
        return "it holds '..'"
    if "@{" in name:
        return "it holds '@{'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it starts or ends with '/', or holds '//'"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"the part {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"the part {part!r} ends with '.lock'"
    return None


def git_ref(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, f"expected {RULE}.")
    problem = ref_problem(value)
    if problem:
        raise ConfigError(key, value, f"git refuses this name ({problem}); expected {RULE}.")
    return value
