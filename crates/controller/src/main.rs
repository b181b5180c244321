//! `cache-demo-ctl up | down | status | render`: see `cache-demo-ctl --help`.

use std::process::ExitCode;

use cache_demo_ctl::cli::{self, Cli};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Each cause once: kube's and clap's messages often repeat their sources.
            let mut shown = e.to_string();
            eprintln!("error: {shown}");
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown.push_str(&text);
                }
            }
            ExitCode::FAILURE
        }
    }
}
