use std::process::ExitCode;

use cache_demo_bench::reference::{RefArgs, serve};
use clap::Parser;

/// The app's allocator, so the comparison is of what the handlers do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = RefArgs::parse();
    match serve(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cache-demo-ref: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
