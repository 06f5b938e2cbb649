//! The `newt` binary: raw args → validated config → commands.

mod args;
mod commands;
mod config;
mod errors;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn init_tracing(verbose: u8) {
    let filter = match verbose {
        0 => "warn",
        1 => "warn,newt_client=debug,newt_crypto=debug,newt_cli=debug",
        _ => "debug,newt_client=trace,newt_crypto=trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: args::Cli) -> anyhow::Result<()> {
    let config = config::Config::new(cli.data_dir, cli.json)?;
    let out = output::Output::new(config.json);
    use args::{Command, KeysCommand};
    use commands::{devices, keys, login, messages, rooms, whoami};
    match &cli.command {
        Command::Login(args) => login::run(&config, out, args).await,
        Command::Logout => whoami::logout(&config, out).await,
        Command::Whoami => whoami::run(&config, out).await,
        Command::CreateRoom(args) => rooms::create(&config, out, args).await,
        Command::Invite { room, user } => rooms::invite(&config, out, room, user).await,
        Command::Join { room } => rooms::join(&config, out, room).await,
        Command::Leave { room } => rooms::leave(&config, out, room).await,
        Command::Rooms => rooms::list(&config, out).await,
        Command::Send { room, text } => messages::send(&config, out, room, text.as_deref()).await,
        Command::Listen(args) => messages::listen(&config, out, args).await,
        Command::History { room, limit } => messages::history(&config, out, room, *limit).await,
        Command::Why { room, event_id } => messages::why(&config, out, room, event_id).await,
        Command::Devices { user } => devices::list(&config, out, user.as_deref()).await,
        Command::Block(d) => {
            devices::mark(&config, out, &d.ids, devices::Mark::Blocked(true)).await
        }
        Command::Unblock(d) => {
            devices::mark(&config, out, &d.ids, devices::Mark::Blocked(false)).await
        }
        Command::Verify(d) => devices::mark(&config, out, &d.ids, devices::Mark::Verified).await,
        Command::Keys(KeysCommand::Export(args)) => keys::export(&config, out, args).await,
        Command::Keys(KeysCommand::Import(args)) => keys::import(&config, out, args).await,
        Command::Demo => commands::demo::run(out).await,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`newt ... | head`) is not a failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
