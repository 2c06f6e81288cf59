"""Every `tacoord` command explains itself (no I/O)."""
import click
from click.testing import CliRunner

from services.cli import main


def commands(group, path=()):
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))


def test_every_command_has_help_that_runs():
    paths = dict(commands(main))
    assert {("stack", "up"), ("stack", "down"), ("stack", "status"), ("stack", "services"),
            ("deadletters", "list"), ("deadletters", "show"), ("deadletters", "replay"),
            ("credentials", "issue"), ("credentials", "revoke"), ("credentials", "list"),
            ("audit", "history"), ("audit", "verify"), ("matching", "rebuild"), ("asyncapi",),
            ("import", "needs"), ("import", "offers"), ("import", "iati")} <= set(paths)
    for path, command in paths.items():
        assert command.help or command.short_help, f"tacoord {' '.join(path)} has no help"
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output


def test_an_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["deadletter"])
    assert result.exit_code == 2 and "No such command 'deadletter'" in result.output
