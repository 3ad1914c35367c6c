//! Command-line flags, named like Categraf's (`--configs`, `--test`, `--inputs`, `--interval`, `--debug`).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Overrides;

/// The only input this binary provides.
pub const INPUT_NAME: &str = "ollama";

/// ollama-tap command line.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ollama-tap",
    version,
    about = "Transparent metering proxy for Ollama: a drop-in for Categraf's ollama input \
             (Prometheus /metrics and remote-write push)"
)]
pub struct Cli {
    /// config directory (Categraf's conf/)
    #[arg(long, env = "CATEGRAF_CONFIGS", default_value = "conf")]
    pub configs: PathBuf,
    /// one-shot check: proxy for one interval, print samples to stdout in Categraf's --test format, push nothing
    #[arg(long)]
    pub test: bool,
    /// colon-separated input names, Categraf style (only `ollama` exists here)
    #[arg(long)]
    pub inputs: Option<String>,
    /// override every interval, integer seconds
    #[arg(long)]
    pub interval: Option<u64>,
    /// debug logging
    #[arg(long)]
    pub debug: bool,
}

// === impl Cli ===

impl Cli {
    /// Errors when `--inputs` is given, not empty, and does not list `ollama`.
    pub fn check_inputs(&self) -> Result<(), String> {
        let Some(list) = self.inputs.as_deref() else {
            return Ok(());
        };
        let mut names = list
            .split(':')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .peekable();
        if names.peek().is_none() || names.any(|n| n == INPUT_NAME) {
            return Ok(());
        }
        Err(format!(
            "--inputs {list:?}: ollama-tap only provides the {INPUT_NAME:?} input"
        ))
    }

    /// Values from the command line that override the config files (`--interval` when > 0).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            interval: self.interval.filter(|n| *n > 0).map(Duration::from_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("ollama-tap").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]);
        // `conf`, unless the environment of this test run names another directory.
        let want =
            std::env::var_os("CATEGRAF_CONFIGS").map_or_else(|| "conf".into(), PathBuf::from);
        assert_eq!(cli.configs, want);
        assert!(!cli.test && !cli.debug);
        assert_eq!(cli.inputs, None);
        assert_eq!(cli.overrides().interval, None);
        assert_eq!(cli.check_inputs(), Ok(()));
    }

    #[test]
    fn all_flags() {
        let cli = parse(&[
            "--configs",
            "/etc/categraf/conf",
            "--test",
            "--inputs",
            "ollama",
            "--interval",
            "5",
            "--debug",
        ]);
        assert_eq!(cli.configs, PathBuf::from("/etc/categraf/conf"));
        assert!(cli.test && cli.debug);
        assert_eq!(cli.overrides().interval, Some(Duration::from_secs(5)));
        assert_eq!(cli.check_inputs(), Ok(()));
        assert_eq!(parse(&["--interval", "0"]).overrides().interval, None);
        let kind = |args: &[&str]| Cli::try_parse_from(args).map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            kind(&["ollama-tap", "--interval", "-3"]),
            Err(clap::error::ErrorKind::UnknownArgument)
        );
        assert_eq!(
            kind(&["ollama-tap", "--interval", "x"]),
            Err(clap::error::ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind(&["ollama-tap", "--bogus"]),
            Err(clap::error::ErrorKind::UnknownArgument)
        );
    }

    #[test]
    fn inputs_filter() {
        assert_eq!(
            parse(&["--inputs", "cpu:ollama:mem"]).check_inputs(),
            Ok(())
        );
        assert_eq!(parse(&["--inputs", ""]).check_inputs(), Ok(()));
        assert_eq!(
            parse(&["--inputs", "cpu:mem"]).check_inputs(),
            Err(r#"--inputs "cpu:mem": ollama-tap only provides the "ollama" input"#.to_owned())
        );
        // A name is matched whole, not as a prefix.
        assert_eq!(
            parse(&["--inputs", "ollama2:x"]).check_inputs(),
            Err(r#"--inputs "ollama2:x": ollama-tap only provides the "ollama" input"#.to_owned())
        );
        assert_eq!(parse(&["--inputs", " ollama "]).check_inputs(), Ok(()));
    }
}
