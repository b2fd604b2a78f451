//! `hearth-server`: run and administer a Hearth federation server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hearth_server::config::{CONFIG_FILE, Config};
use hearth_server::{SecAggRounds, ops};

/// How long open requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(name = "hearth-server", version, about = "Hearth federation server")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = CONFIG_FILE)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a server folder: example configuration, self-signed
    /// certificate, database.
    Init {
        /// The folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Serve until Ctrl-C or SIGTERM.
    Run,
    /// Issue a one-time invite token for a federation.
    Invite {
        /// Federation id.
        #[arg(long)]
        federation: String,
        /// Hours until the invite expires.
        #[arg(long, default_value_t = 72)]
        expires_hours: u64,
    },
    /// List enrolled devices.
    Devices {
        /// Only this federation's.
        #[arg(long)]
        federation: Option<String>,
    },
    /// Revoke a device: its requests are refused from now on.
    Revoke {
        /// Device id.
        device: String,
    },
    /// Federations, devices, rounds in flight, last published versions.
    Status,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(dispatch(cli))
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| {
        format!(
            "loading {} (run `hearth-server init` to create one)",
            path.display()
        )
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { dir } => {
            let report = ops::init(&dir).await?;
            let config_state = if report.wrote_config { "wrote" } else { "kept" };
            println!("{config_state} {}", report.config_path.display());
            let cert_state = if report.generated_certificate {
                "generated self-signed"
            } else {
                "using"
            };
            println!("{cert_state} certificate {}", report.tls.cert.display());
            println!("database {}", report.database.display());
            let key_state = if report.generated_server_key {
                "generated"
            } else {
                "kept"
            };
            println!(
                "{key_state} server signing key {}",
                report.server_key_path.display()
            );
            println!("certificate SHA-256 fingerprint: {}", report.fingerprint);
            println!(
                "server signing key (ed25519, devices pin it): {}",
                report.server_key
            );
            let log_key_state = if report.generated_log_key {
                "generated"
            } else {
                "kept"
            };
            println!(
                "{log_key_state} transparency log key; devices pin its public key: {}",
                report.log_public_key
            );
        }
        Command::Run => {
            let config = load(&cli.config)?;
            let server_key_config = config.clone();
            let server = hearth_server::start(config, std::sync::Arc::new(SecAggRounds)).await?;
            println!("listening on https://{}", server.local_addr());
            println!("certificate SHA-256 fingerprint: {}", server.fingerprint());
            if let Some(key) = ops::server_key(&server_key_config)? {
                println!("server signing key (ed25519): {key}");
            }
            println!("transparency log public key: {}", server.log_public_key());
            for federation in &server_key_config.federations {
                let model = federation.secagg.threat_model();
                let full = federation.secagg.for_cohort(federation.cohort_target());
                println!(
                    "federation {}: a full cohort of {} runs with k = {} neighbours, t = {} \
                     (sized for {}% colluding and {}% dropping devices)",
                    federation.id,
                    federation.cohort_target(),
                    full.neighbours,
                    full.threshold,
                    model.corrupt_fraction * 100.0,
                    model.dropout_fraction * 100.0
                );
            }
            server.run_until(shutdown_signal(), SHUTDOWN_GRACE).await?;
            println!("stopped");
        }
        Command::Invite {
            federation,
            expires_hours,
        } => {
            let config = load(&cli.config)?;
            let valid_for = Duration::from_secs(expires_hours.saturating_mul(3600));
            let invite = ops::invite(&config, &federation, valid_for).await?;
            println!("{}", invite.token);
            eprintln!(
                "one-time invite to {:?}, expires at {} ms since the epoch; it is not stored and will not be shown again",
                invite.federation_id, invite.expires_at_ms
            );
        }
        Command::Devices { federation } => {
            let config = load(&cli.config)?;
            let devices = ops::devices(&config, federation.as_deref()).await?;
            println!(
                "{:<28} {:<16} {:>15} {:>15} revoked",
                "device", "federation", "enrolled ms", "last check-in"
            );
            for d in &devices {
                println!(
                    "{:<28} {:<16} {:>15} {:>15} {}",
                    d.id,
                    d.federation_id,
                    d.enrolled_at_ms,
                    d.last_checkin_ms.map_or("-".into(), |t| t.to_string()),
                    d.revoked_at_ms.map_or("no".into(), |t| t.to_string()),
                );
            }
            eprintln!("{} device(s)", devices.len());
        }
        Command::Revoke { device } => {
            let config = load(&cli.config)?;
            match ops::revoke(&config, &device).await? {
                Some(d) => println!(
                    "revoked {} at {} ms",
                    d.id,
                    d.revoked_at_ms.unwrap_or_default()
                ),
                None => {
                    eprintln!("no device {device:?}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Status => {
            let config = load(&cli.config)?;
            match ops::server_key(&config)? {
                Some(key) => println!("server signing key (ed25519): {key}"),
                None => println!("no server signing key yet (run `hearth-server init`)"),
            }
            for f in ops::status(&config).await? {
                let configured = if f.configured {
                    ""
                } else {
                    " (not in the configuration)"
                };
                println!("federation {}{configured}", f.id);
                println!(
                    "  devices: {} active, {} eligible recently",
                    f.devices.active, f.devices.eligible
                );
                match &f.round_in_flight {
                    Some(r) => println!(
                        "  round {} in flight: stage {}, {} members, stage deadline {} ms",
                        r.round,
                        r.stage.as_str(),
                        r.cohort_size,
                        r.stage_deadline_ms
                    ),
                    None => println!("  no round in flight"),
                }
                match &f.latest_global {
                    Some(g) => println!(
                        "  global version {} from round {} ({} bytes, sha256 {}), published at {} ms",
                        g.version,
                        g.round,
                        g.size_bytes,
                        hex_string(&g.sha256),
                        g.published_at_ms
                    ),
                    None => println!("  no global adapter published yet"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
