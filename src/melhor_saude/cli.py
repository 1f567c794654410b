"""`melhor-saude`: run the API, the worker, or both; migrate; seed; administer."""

from __future__ import annotations

import asyncio
import getpass
import signal
import sys
from typing import Annotated

import typer

from melhor_saude.db import DatabaseUrls
from melhor_saude.settings import Settings, get_settings

cli = typer.Typer(help="Melhor Saúde sessions backend.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
user_cli = typer.Typer(help="Accounts.", no_args_is_help=True)
seed_cli = typer.Typer(help="Demo data.", no_args_is_help=True)
token_cli = typer.Typer(help="Tokens for trusted callers.", no_args_is_help=True)
email_cli = typer.Typer(help="The email outbox: dead letters, re-driving.", no_args_is_help=True)
recurring_cli = typer.Typer(help="Recurring series.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(email_cli, name="email")
cli.add_typer(recurring_cli, name="recurring")
cli.add_typer(token_cli, name="token")
cli.add_typer(user_cli, name="user")
cli.add_typer(seed_cli, name="seed")

HostOpt = Annotated[str, typer.Option(help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option(help="Port to listen on.")]


def _prepare(host: str | None = None) -> tuple[Settings, DatabaseUrls]:
    from melhor_saude.app import init_process
    from melhor_saude.db import resolve_urls
    from melhor_saude.migrate import migrate
    from melhor_saude.settings import ConfigurationError

    settings = get_settings()
    try:
        settings.check(host)
    except ConfigurationError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from exc
    init_process(settings)
    urls = resolve_urls(settings)
    migrate(urls.admin)
    return settings, urls


@cli.command()
def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """API and worker in one process, with demo data on a fresh database (development)."""
    from melhor_saude.runner import run_all

    settings, urls = _prepare(host)
    # The demo accounts' password is published: never on a service others can reach.
    demo = not settings.exposed(host)
    if not demo:
        typer.echo("demo accounts not created: the service is not a private development copy")
    asyncio.run(run_all(settings, urls, host=host, port=port, with_worker=True, demo=demo))


@cli.command()
def api(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """The HTTP API only (production: run workers separately)."""
    import uvicorn

    _prepare(host)
    uvicorn.run(
        "melhor_saude.runner:production_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        proxy_headers=True,
    )


@cli.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Jobs run at once.")] = 4,
) -> None:
    """The background worker only: delivers email, runs periodic jobs."""
    from melhor_saude.runner import run_worker_process

    settings, urls = _prepare()
    asyncio.run(run_worker_process(settings, urls, concurrency=concurrency))


@db_cli.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations."""
    from melhor_saude.db import resolve_urls
    from melhor_saude.migrate import migrate

    applied = migrate(resolve_urls(get_settings()).admin)
    typer.echo("\n".join(applied) if applied else "up to date")


@db_cli.command("status")
def db_status() -> None:
    """List migrations and whether each is applied."""
    from melhor_saude.db import resolve_urls
    from melhor_saude.migrate import status

    for version, name, applied in status(resolve_urls(get_settings()).admin):
        typer.echo(f"{'applied' if applied else 'pending':8} {version} {name}")


@user_cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Admin's email.")],
    full_name: Annotated[str, typer.Option(help="Admin's name.")] = "Administrador",
    password: Annotated[str | None, typer.Option(help="Password (asked for when omitted).")] = None,
) -> None:
    """Create (or promote) a platform admin; the only way to bootstrap the first one."""
    from melhor_saude.identity.bootstrap import create_admin_account

    settings, urls = _prepare()
    secret = password or getpass.getpass("Password: ")
    user_id = asyncio.run(create_admin_account(settings, urls, email, full_name, secret))
    typer.echo(f"admin {email.strip().lower()} ({user_id})")


@seed_cli.command("demo")
def seed_demo() -> None:
    """Load the demo company, people and specialists (idempotent; development only)."""
    from melhor_saude.demo import seed_demo_data

    settings, urls = _prepare()
    if settings.exposed(None):
        typer.echo("refusing: demo accounts have a published password (development only)", err=True)
        raise typer.Exit(2)
    credentials = asyncio.run(seed_demo_data(settings, urls))
    for line in credentials:
        typer.echo(line)


@token_cli.command("service")
def service_token(
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=60, max=31_536_000)] = 3600,
) -> None:
    """Print a service-role token for an external scheduler (the recurring dispatcher's
    endpoints are the only ones that accept it)."""
    from melhor_saude.identity.tokens import issue_service_token

    settings = get_settings()
    settings.check()
    typer.echo(issue_service_token(settings, ttl_seconds=ttl))


@email_cli.command("status")
def email_status() -> None:
    """Emails waiting (new, retrying), dead-lettered, and the oldest overdue one's wait."""
    from melhor_saude.notification.operations import outbox_status

    _, urls = _prepare()
    summary = asyncio.run(outbox_status(urls))
    typer.echo(
        f"pending {summary.pending}  retrying {summary.retrying}  dead {summary.dead}"
        f"  oldest overdue {summary.oldest_due_seconds} s"
    )


@email_cli.command("dead")
def email_dead(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 100,
) -> None:
    """List dead-lettered emails: id, when queued, template, attempts, address, last error."""
    from melhor_saude.notification.operations import list_dead

    _, urls = _prepare()
    for email in asyncio.run(list_dead(urls, limit)):
        typer.echo(
            f"{email.id}  {email.created_at:%Y-%m-%d %H:%M}  {email.template:<28}"
            f" {email.attempts:>3}  {email.to_address}  {email.last_error or ''}"
        )


@email_cli.command("retry")
def email_retry(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="A dead email's id (repeatable).")
    ] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Every dead email.")] = False,
) -> None:
    """Send dead emails again (with a new retry window). Verification and reset emails
    get a fresh link; ones stored with a link that has expired are dropped instead."""
    from melhor_saude.notification.operations import redrive

    if bool(ids) == retry_all:
        typer.echo("give --id (one or more) or --all", err=True)
        raise typer.Exit(2)
    _, urls = _prepare()
    try:
        result = asyncio.run(redrive(urls, None if retry_all else list(ids or [])))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"retried {len(result.retried)}, dropped {len(result.dropped)} (expired links)")


@recurring_cli.command("dispatch")
def recurring_dispatch(
    on: Annotated[
        str | None, typer.Option("--date", help="Dispatch as if today were YYYY-MM-DD.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Do it all, then roll back: what would happen.")
    ] = False,
) -> None:
    """Book every recurring occurrence due within the lead window now (what the daily
    job does), with a progress bar and a summary."""
    from datetime import date

    from melhor_saude.recurring.operations import dispatch_now

    try:
        today = date.fromisoformat(on) if on else None
    except ValueError as exc:
        typer.echo(f"not a date: {on!r} (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from exc
    settings, urls = _prepare()
    summary = asyncio.run(dispatch_now(settings, urls, today=today, dry_run=dry_run))
    typer.echo(
        f"{'dry run: ' if dry_run else ''}{summary.series} series, {summary.created} booked,"
        f" {summary.skipped} skipped, {summary.missed} missed, {summary.failed} failed"
    )
    for reason, n in sorted(summary.skip_reasons.items()):
        typer.echo(f"  skipped {reason}: {n}")
    for error in summary.errors[:20]:
        typer.echo(f"  failed {error['series_id']} {error['date']}: {error['error']}")
    if summary.failed:
        raise typer.Exit(1)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    # `serve` and `worker` stop gracefully on SIGTERM (`runner.stop_on_signals`); `api`
    # (uvicorn) re-raises it once it has shut down, and elsewhere (migrations, demo
    # data) it arrives as is: as an exception rather than the default handler it lets
    # exit hooks run, so the embedded server is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
