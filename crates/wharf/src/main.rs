//! `wharf`: one binary for every part of Wharf. See `wharf --help`.

mod cli;
mod commands;
mod http;
mod run;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogArgs, LogFormat};

fn init_tracing(log: Option<&LogArgs>) {
    // WHARF_LOG or RUST_LOG set the filter, e.g. WHARF_LOG=wharf_sftp=debug,wharf_ftps=debug.
    let filter = std::env::var("WHARF_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(if log.is_some() { "info" } else { "warn" })
                // rustls warns of every client that sends an IP address as its TLS server name
                // (lftp, curl: a partner connecting by IP), which RFC 6066 forbids and rustls
                // ignores; a line per connection would drown the log.
                .add_directive(
                    "rustls::msgs::handshake=error"
                        .parse()
                        .expect("a valid directive"),
                )
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.map(|l| l.log_format) {
        Some(LogFormat::Json) => builder.json().init(),
        _ => builder.init(),
    }
}

/// Lets a closed standard output end a CLI command the way it ends `ls` or `cat`: killed by
/// SIGPIPE, quietly, with the exit status shells expect of a pipeline's writer. Rust ignores
/// SIGPIPE, so `println!` would panic on the closed pipe instead (`wharf users list | head -1`).
/// Servers keep ignoring it: a client that goes away must not stop them.
fn die_quietly_on_closed_stdout() {
    // SAFETY: called once at start, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(
        cli.command,
        Command::Serve(_)
            | Command::ControlPlane(_)
            | Command::SftpGateway(_)
            | Command::FtpsGateway(_)
    );
    if !is_server {
        die_quietly_on_closed_stdout();
    }
    // One TLS crypto provider for the whole process (rustls panics if it has to guess).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                init_tracing(Some(&args.log));
                run::serve(*args).await
            }
            Command::ControlPlane(args) => {
                init_tracing(Some(&args.log));
                run::control_plane(*args).await
            }
            Command::SftpGateway(args) => {
                init_tracing(Some(&args.log));
                run::sftp_gateway(args).await
            }
            Command::FtpsGateway(args) => {
                init_tracing(Some(&args.log));
                run::ftps_gateway(args).await
            }
            Command::Users(command) => {
                init_tracing(None);
                commands::users(command).await
            }
            Command::Buckets(command) => {
                init_tracing(None);
                commands::buckets(command).await
            }
            Command::Webhooks(command) => {
                init_tracing(None);
                commands::webhooks(command).await
            }
            Command::Bans(command) => {
                init_tracing(None);
                commands::bans(command).await
            }
            Command::Events(command) => {
                init_tracing(None);
                commands::events(command).await
            }
            Command::Objects(command) => {
                init_tracing(None);
                commands::objects(command).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = commands::explain(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
