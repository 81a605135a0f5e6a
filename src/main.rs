//! `ringway [-c FILE] [--check]`: load and compile the config, start the workers, wait for
//! SIGTERM/SIGINT, drain, exit 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: ringway [-c FILE] [--check]\n  -c, --config FILE  config file (default conf/ringway.toml)\n  --check            validate the config and exit\n  -V, --version      print the version";

fn main() -> ExitCode {
    let (mut config, mut check) = (PathBuf::from("conf/ringway.toml"), false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => match args.next() {
                Some(p) => config = PathBuf::from(p),
                None => return usage_error("-c needs a file"),
            },
            "--check" => check = true,
            "-V" | "--version" => return done(&format!("ringway {}", env!("CARGO_PKG_VERSION"))),
            "-h" | "--help" => return done(USAGE),
            other => return usage_error(&format!("unknown argument {other}")),
        }
    }
    init_logging();
    let snapshot = match ringway::config::load(&config, 1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: {}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    if check {
        let (l, s, a) = (snapshot.listeners.len(), snapshot.services.len(), snapshot.apis.len());
        return done(&format!("{}: ok ({l} listeners, {s} services, {a} APIs)", config.display()));
    }
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
    };
    let running = match ringway::runtime::start(Arc::new(snapshot)) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    for addr in &running.addrs {
        tracing::info!(%addr, workers = running.drivers.len(), drivers = ?running.drivers, "Listening");
    }
    for sig in signals.forever() {
        if sig == SIGHUP {
            tracing::warn!("SIGHUP received; live reload is not implemented yet, keeping the running config");
            continue;
        }
        tracing::info!(signal = sig, "Shutting down: draining in-flight requests");
        break;
    }
    running.shutdown();
    running.join();
    ExitCode::SUCCESS
}

fn init_logging() {
    let level = std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt().with_max_level(level).with_target(false).with_writer(std::io::stderr).init();
}

fn done(msg: &str) -> ExitCode {
    println!("{msg}");
    ExitCode::SUCCESS
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("ringway: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ringway: {msg}");
    ExitCode::from(1)
}
