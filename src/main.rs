//! `ollama-tap`: parse the flags, run, print the one-line error and exit non-zero on failure.
#![warn(clippy::too_many_lines)]

fn main() {
    let cli = ollama_tap::Cli::parse_args();
    if let Err(e) = ollama_tap::run(cli) {
        eprintln!("ollama-tap: {e:#}");
        std::process::exit(ollama_tap::exit_code(&e));
    }
}
