use std::process::ExitCode;

use anyhow::Context;
use cache_demo_bench::Args;
use cache_demo_bench::report::splice;
use clap::Parser;

/// The load generator shares the cores with the server it measures, so what it spends per request is taken from
/// that server: mimalloc allocates and frees in fewer instructions than glibc's malloc, and a response with more
/// headers than another (the app's against a reference's) allocates more, so the allocator also weighed on the
/// comparison.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cache-demo-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let threads = args
        .threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = rt.block_on(async {
        tokio::select! {
            report = cache_demo_bench::run(args) => report.map(Some),
            // Dropping the run stops the workers and kills a spawned app.
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    })?;
    let Some(report) = report else {
        eprintln!("cache-demo-bench: interrupted");
        return Ok(ExitCode::from(130));
    };
    let markdown = report.to_markdown();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding the report")?);
    } else {
        println!("{markdown}");
    }
    if let Some(path) = &args.markdown_out {
        let existing = std::fs::read_to_string(path).ok();
        std::fs::write(path, splice(existing.as_deref(), &markdown))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("cache-demo-bench: wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
