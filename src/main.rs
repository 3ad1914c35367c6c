//! `ollama-tap`: parse the flags, run, print the one-line error and exit non-zero on failure.
#![warn(clippy::too_many_lines)]

fn main() {
    let cli = ollama_tap::cli::Cli::parse_args();
    if let Err(e) = ollama_tap::run::run(cli) {
        eprintln!("ollama-tap: {e:#}");
        std::process::exit(ollama_tap::run::exit_code(&e));
    }
}
