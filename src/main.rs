//! `ringway [-c FILE] [--check]`: load and compile the config, start the workers, then follow
//! signals: SIGTERM/SIGINT/SIGQUIT drain and exit 0 (a second one exits at once with 3), SIGUSR1
//! reopens the access log, SIGHUP and SIGUSR2 are logged. Exit codes: 0 drained, 1 could not
//! start, 2 bad arguments or config, 3 stopped by a second signal during the drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: ringway [-c FILE] [--check | --upgrade]\n  -c, --config FILE  config file (default conf/ringway.toml)\n  --check            validate the config and exit\n  --upgrade          take over the listening sockets of the ringway running with FILE, then\n                     let it drain and exit (binary upgrade without refusing a connection)\n  -V, --version      print the version";

fn main() -> ExitCode {
    let (mut config, mut check, mut upgrade) = (PathBuf::from("conf/ringway.toml"), false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => match args.next() {
                Some(p) => config = PathBuf::from(p),
                None => return usage_error("-c needs a file"),
            },
            "--check" => check = true,
            "--upgrade" => upgrade = true,
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
    let warnings = match ringway::runtime::preflight(&snapshot) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ringway: {}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    if check {
        for w in &warnings {
            eprintln!("ringway: {}: warning: {w}", config.display());
        }
        // names that do not resolve now: not an error (they may be created later; start-up
        // never waits for DNS), but worth a word
        for w in ringway::runtime::dns::check_names(&snapshot) {
            eprintln!("ringway: {}: warning: {w}", config.display());
        }
        let (l, s, a) = (snapshot.listeners.len(), snapshot.services.len(), snapshot.apis.len());
        return done(&format!("{}: ok ({l} listeners, {s} services, {a} APIs)", config.display()));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
    };
    let drain_delay = snapshot.instance.drain_delay;
    let upgrade_path = ringway::runtime::upgrade::socket_path(&config);
    let (handover, inherited) = match upgrade {
        false => (None, Vec::new()),
        true => match ringway::runtime::upgrade::receive(&upgrade_path) {
            Ok((stream, inherited)) => (Some(stream), inherited),
            Err(e) => return fail(&e.to_string()),
        },
    };
    let running = match ringway::start_upgrade(Arc::new(snapshot), config.clone(), inherited) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(stream) = handover {
        match ringway::runtime::upgrade::confirm(stream) {
            Ok(()) => tracing::info!("Took over the listening sockets; the previous process drains"),
            Err(e) => tracing::warn!(error = %e, "Could not tell the previous process; it keeps running"),
        }
    }
    // the next upgrade comes to us; its confirmation starts our drain like SIGTERM
    let raise = || {
        let _ = signal_hook::low_level::raise(SIGTERM);
    };
    if let Err(e) = running.serve_upgrades(upgrade_path.clone(), raise) {
        tracing::warn!(error = %e, path = %upgrade_path.display(), "Binary upgrade unavailable");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.display(),
        workers = running.drivers.len(),
        driver = running.drivers.first().copied().unwrap_or(""),
        admin = %running.admin_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        "ringway started"
    );
    for addr in &running.addrs {
        tracing::info!(%addr, workers = running.drivers.len(), drivers = ?running.drivers, "Listening");
    }
    ringway::runtime::notify::sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    // until the first stop signal: reopen logs, note the others
    for sig in signals.forever() {
        match sig {
            SIGUSR1 => running.reopen_logs(),
            // errors are logged by the reload itself and kept for /config
            SIGHUP => {
                ringway::runtime::notify::reloading();
                let _ = running.reload();
                ringway::runtime::notify::sd_notify("READY=1");
            }
            SIGUSR2 => tracing::info!("SIGUSR2 ignored: start the new binary with --upgrade to upgrade"),
            _ => {
                tracing::info!(signal = sig, drain_delay_ms = drain_delay.as_millis() as u64, "Stopping: draining");
                break;
            }
        }
    }
    // drain delay (health check failing, traffic still served), then stop accepting and drain;
    // a second stop signal at any point ends the process at once
    ringway::runtime::notify::sd_notify("STOPPING=1");
    running.begin_drain();
    let (tx, rx) = std::sync::mpsc::channel();
    let done = tx.clone();
    std::thread::spawn(move || {
        std::thread::sleep(drain_delay);
        running.shutdown();
        running.join();
        let _ = done.send(None);
    });
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if matches!(sig, SIGTERM | SIGINT | SIGQUIT) {
                let _ = tx.send(Some(sig));
                return;
            }
        }
    });
    match rx.recv() {
        Ok(Some(sig)) => {
            tracing::warn!(signal = sig, "Second stop signal during the drain: exiting now");
            ExitCode::from(3)
        }
        _ => {
            tracing::info!("Stopped");
            ExitCode::SUCCESS
        }
    }
}

/// `RUST_LOG` takes tracing's filter syntax (`warn`, `ringway=debug`, `info,ringway::proxy=trace`);
/// a filter that does not parse is reported and `info` is used. Colour only on a terminal.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some(format!("RUST_LOG={v:?} is not a valid filter ({e}); using info"))),
        },
        Err(_) => (EnvFilter::new("info"), None),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    if let Some(msg) = bad {
        tracing::warn!("{msg}");
    }
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
