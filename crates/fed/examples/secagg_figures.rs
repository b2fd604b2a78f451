//! Temporary: `hearth bench secagg`'s figures without building the CLI.
#![allow(missing_docs, clippy::unwrap_used)]
fn main() {
    for round in 0..3 {
        println!("round {round}");
        println!(
            "{}",
            hearth_fed::bench::client_masking(1_000_000, 16).unwrap()
        );
        for clients in [100, 1000] {
            println!(
                "{}",
                hearth_fed::bench::server_unmask(clients, 1_000_000, 0.1).unwrap()
            );
        }
    }
}
