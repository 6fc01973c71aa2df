"""``shipper completion bash|zsh|fish``: the script that makes a shell complete shipper's commands,
options, and the inventory's hosts and groups wherever a target is asked for."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from shipper.cli.options import env_of

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL, to source from its startup file:

    \b
      bash: echo 'eval "$(shipper completion bash)"' >> ~/.bashrc
      zsh:  echo 'eval "$(shipper completion zsh)"' >> ~/.zshrc
      fish: shipper completion fish > ~/.config/fish/completions/shipper.fish
    """
    root = ctx.find_root().command
    script_class = get_completion_class(shell)
    assert script_class is not None  # the Choice above admits only shells click knows
    env_of(ctx).out(script_class(root, {}, "shipper", "_SHIPPER_COMPLETE").source())
