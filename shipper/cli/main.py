"""``shipper``: the entry point, global options, and error handling."""

from __future__ import annotations

import signal
from pathlib import Path
import sys
import traceback

import click

from shipper import __version__
import importlib
from shipper.cli.options import ExitRequest
from shipper.cli.output import Env
from shipper.errors import ExitStatus, ShipperError, UsageError


# Each command's module is imported when that command runs (or help lists it): a command pays only for its own
# imports (docker, paramiko, cryptography, rich… take most of a second together), and so does every host a
# playbook or a fleet script runs shipper for.
COMMANDS = {
    "hosts": "shipper.cli.fleet:hosts",
    "ping": "shipper.cli.fleet:ping",
    "images": "shipper.cli.fleet:images",
    "move": "shipper.cli.move:move",
    "registry": "shipper.cli.registry:registry",
    "bundle": "shipper.cli.bundle:bundle",
    "play": "shipper.cli.play:play",
    "completion": "shipper.cli.completion:completion",
    "key": "shipper.cli.key:key",
    "sign": "shipper.cli.sign:sign",
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shipper")
@click.option("--traceback", "show_traceback", is_flag=True, help="On error, print the Python traceback too.")
@click.pass_context
def cli(ctx: click.Context, show_traceback: bool) -> None:
    """Move Docker images between Docker engines, and deploy them."""
    env = ctx.ensure_object(Env)
    env.traceback = show_traceback


def subcommand(group: click.Command, name: str) -> click.Command | None:
    """``group``'s command ``name`` (imported if need be), or None."""
    if not isinstance(group, click.Group):
        return None
    with click.Context(group) as ctx:
        return group.get_command(ctx, name)


# Docker's and skopeo's spellings, taken as shipper's own: the flag -> what shipper reads it as.
ALIASES = {
    "--password-stdin": ["--password-file", "-"],  # docker login, skopeo login
    "--tls-verify=false": ["--insecure"],  # skopeo
    "--tls-verify=true": [],  # skopeo: the default
    "--tls-verify": [],
}


def _cert_dir_ca(directory: str) -> str:
    """skopeo's --cert-dir: the directory's ca.crt, else its first *.crt (a missing file is then named by --ca)."""
    base = Path(directory).expanduser()
    found = sorted(base.glob("*.crt")) if base.is_dir() else []
    return str(base / "ca.crt") if (base / "ca.crt").exists() or not found else str(found[0])


def _with_aliases(argv: list[str]) -> list[str]:
    """``argv`` with the aliases spelt out (up to a ``--``, after which everything is an argument)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        if word == "--cert-dir" and i + 1 < len(argv):
            out += ["--ca", _cert_dir_ca(argv[i + 1])]
            i += 2
            continue
        if word.startswith("--cert-dir="):
            out += ["--ca", _cert_dir_ca(word.split("=", 1)[1])]
        else:
            out += ALIASES.get(word, [word])
        i += 1
    return out


# Options every command takes, accepted before the command too (shipper -i inv hosts), as Ansible and docker users type them.
GLOBAL_OPTIONS = {"-i": 1, "--inventory": 1, "--json": 0, "--forks": 1}


def _globals_after_command(argv: list[str]) -> list[str]:
    """``argv`` with the common options written before the command moved after it."""
    kept: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        word = argv[i]
        name = word.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and ("=" in word or GLOBAL_OPTIONS[name] == 0):
            moved.append(word)
            i += 1
        elif name in GLOBAL_OPTIONS and i + 1 < len(argv):
            moved += argv[i : i + 2]
            i += 2
        elif word.startswith("-i") and len(word) > 2:  # -iFILE
            moved.append(word)
            i += 1
        else:
            kept.append(word)
            i += 1
    if not moved:
        return argv
    command: click.Command = cli
    j = i
    while j < len(argv) and (found := subcommand(command, argv[j])) is not None:
        command = found
        j += 1
    return kept + argv[i:j] + moved + argv[j:]


def run(argv: list[str], env: Env | None = None) -> int:
    """Run the CLI in-process and return its exit status (used by main and tests)."""
    env = env or Env()
    argv = _globals_after_command(_with_aliases(argv))
    status, error = _run(argv, env)
    if status and not env.json_mode and "--json" in argv[: argv.index("--") if "--" in argv else len(argv)]:
        env.begin(" ".join(_command_words(argv)))  # refused before --json was read: the stream still begins and ends
    env.end(status, error)
    return status


def _command_words(argv: list[str]) -> list[str]:
    """The command path that ``argv`` names (``registry ls``), as far as it names one."""
    words: list[str] = []
    command: click.Command = cli
    for word in (w for w in argv if not w.startswith("-")):
        found = subcommand(command, word)
        if found is None:
            break
        command = found
        words.append(word)
    return words


def _run(argv: list[str], env: Env) -> tuple[int, ShipperError | None]:
    try:
        cli.main(args=argv, prog_name="shipper", standalone_mode=False, obj=env)
    except ShipperError as exc:
        if env.traceback:
            traceback.print_exc(file=env.stderr)
        env.error(exc)
        return int(exc.exit_status), exc
    except click.exceptions.Exit as exc:
        return int(exc.exit_code), None
    except click.ClickException as exc:
        exc.show(file=env.stderr)
        return int(ExitStatus.USAGE), UsageError(exc.format_message())
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        terminated = exc if isinstance(exc, Terminated) else exc.__cause__  # click turns it into Abort
        if isinstance(terminated, Terminated):
            name = signal.Signals(terminated.signum).name
            message = f"interrupted by {name}: targets keep the tags they had; run the command again to finish"
            print(message, file=env.stderr)
            return 128 + terminated.signum, ShipperError(message)
        print("interrupted", file=env.stderr)
        return int(ExitStatus.INTERRUPTED), ShipperError("interrupted")
    except ExitRequest as exc:
        return exc.status, None
    except SystemExit:
        if type(sys.stdout).__name__ == "_PacifyFlushWrapper":  # click's answer to a broken pipe: exit 1, quietly
            raise BrokenPipeError(32, "the reader of shipper's output went away") from None
        raise
    return int(ExitStatus.OK), None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a service stopped, a terminal closed): unwound like Ctrl-C, so every cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminated(signum: int, frame: object) -> None:
    for other in TERMINATING:  # once: the cleanup that follows must not itself be cut short
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


TERMINATING = (signal.SIGTERM, signal.SIGHUP)
SIGPIPE_STATUS = 128 + signal.SIGPIPE  # 141: what a shell reports for a writer whose reader went away


def main() -> None:
    for signum in TERMINATING:
        signal.signal(signum, _terminated)
    try:
        status = run(sys.argv[1:])
    except BrokenPipeError:  # the reader went away (| head): nothing more to tell it, and no stack to show
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = SIGPIPE_STATUS
    _exit_now(status)


INTERRUPTED_STATUSES = (int(ExitStatus.INTERRUPTED), *(128 + signum for signum in TERMINATING))
INTERRUPTED_GRACE = 5.0  # seconds an interrupted command waits for its threads to end before it ends without them


def _wait_for_threads_within(seconds: float) -> None:
    """Wait for the threads that are not daemons, at most ``seconds`` in all. An interrupted command's cleanups
    close what its threads work on (engines, sessions, registry requests), so they end at once; one still blocked
    on something nobody closed must not keep a Ctrl-C or a SIGTERM from ending shipper."""
    import threading
    import time

    deadline = time.monotonic() + seconds
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in others if t.is_alive()]
    if left:  # a defect to report: something no cleanup closed
        print(f"shipper: ended without waiting any longer for {len(left)} thread(s): {', '.join(left)}", file=sys.stderr)


def _exit_now(status: int) -> None:
    """End the process without the interpreter's teardown, which frees every module and object one by one: about
    0.1 s of CPU at the end of every command (a fifth of a ``ping``), for nothing once the work is done. What an
    exit still owes is done first: threads that are not daemons finish, the atexit handlers run (logging's flush,
    paramiko's joins, weakref finalizers such as temporary directories'), the standard streams are flushed."""
    import atexit
    import os
    import threading

    # What the interpreter itself calls first when it ends: threading's own exit work (an executor's idle workers
    # told to stop), then every thread that is not a daemon waited for; then the atexit handlers.
    wait_for_threads = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if wait_for_threads is None or run_exit_handlers is None:  # a Python without them: the ordinary exit
        sys.exit(status)
    if status in INTERRUPTED_STATUSES:
        _wait_for_threads_within(INTERRUPTED_GRACE)
    else:
        wait_for_threads()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away (| head), or a stream already closed: nothing more to tell
    os._exit(status)
