//! The e2e test's federation (`ui/e2e/run.mjs`): starts a real
//! hearth-server on 127.0.0.1 with a federation of the tiny stories260K
//! model that needs two devices per round, prints one JSON line with what
//! the app needs to join (server URL, certificate file, a one-time invite),
//! then runs a second real device that joins and waits to take part in a
//! round with the app. When that round is done it prints a second JSON
//! line, and keeps serving until its standard input closes.
//!
//! Usage: `federation_peer MODEL TINYSHAKESPEARE WORK_DIR`.

mod peer;

use std::io::Write;
use std::path::PathBuf;

use hearth_progress::CancelToken;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("federation_peer: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> peer::PeerResult<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, shakespeare, work] = args.as_slice() else {
        return Err("usage: federation_peer MODEL TINYSHAKESPEARE WORK_DIR".into());
    };
    let server = peer::start_server(&work.join("server"), model)?;
    let app_invite = server.server.invite(peer::FEDERATION)?;
    let peer_invite = server.server.invite(peer::FEDERATION)?;
    say(&serde_json::json!({
        "url": server.server.url(),
        "certificate": server.certificate,
        "invite": app_invite,
        "federation": peer::FEDERATION,
    }))?;

    // The peer device on its own thread; the main thread serves until the
    // test closes standard input (or goes away).
    let cancel = CancelToken::new();
    let (url, certificate) = (server.server.url(), server.server.cert_pem());
    let device = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let outcome = peer::run_peer(
                &work.join("peer"),
                url,
                certificate,
                &peer_invite,
                model,
                shakespeare,
                &cancel,
            );
            let line = match &outcome {
                Ok(summary) => serde_json::json!({"peer": "done", "summary": summary}),
                Err(error) => serde_json::json!({"peer": "failed", "error": error.to_string()}),
            };
            let _ = say(&line);
            outcome.map(|_| ())
        });
        // Until standard input closes (an error reading it counts as closed).
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        cancel.cancel();
        worker.join()
    });
    server.server.shutdown()?;
    match device {
        Ok(result) => result,
        Err(_) => Err("the peer device's thread panicked".into()),
    }
}

/// One line of JSON on standard output, flushed (the test reads lines).
fn say(value: &serde_json::Value) -> peer::PeerResult<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}
