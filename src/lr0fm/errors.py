"""Errors a user can cause. The CLI prints the message as one sentence and exits with status 2."""


class UserError(Exception):
    """A problem with the user's input (unknown name, missing file, bad flag) that they can fix."""

    exit_code = 2
