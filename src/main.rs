//! The `custval` binary: parse arguments, set up logging, call the library,
//! print an error once and map it to an exit code (0 ok, 1 run failed,
//! 2 invalid input, 3 gate).

use std::io::IsTerminal;

use clap::Parser;
use custval::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    // The per-step and summary lines of a run are on unless -q.
    let progress = if cli.quiet {
        String::new()
    } else {
        format!(",{}=info", custval::progress::TARGET)
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("custval={default}{progress},warn")));
    let json = match cli.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a terminal: never escape codes in a pipe or file.
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    custval::security::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("custval: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(custval::cli::run(cli)) {
        Ok(()) => 0,
        // The reader of our output went away (`custval ... | head`): nothing
        // to report, as with any Unix filter.
        Err(custval::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            0
        }
        // One line, once: the log stream may be JSON for machines, but the
        // error is for whoever ran the command.
        Err(e) => {
            eprintln!("custval: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
