//! Command-line flags, named like Categraf's (`--configs`, `--test`, `--inputs`, `--interval`, `--debug`).
//! Go's flag package takes one dash as well as two (`-configs conf`), so [`Cli::parse_args`]
//! accepts both spellings of these long flags.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Overrides;

/// The only input this binary provides.
pub(crate) const INPUT_NAME: &str = "ollama";

/// The long flags that Go's flag package, so Categraf, also takes with one dash.
const SINGLE_DASH: [&str; 7] = [
    "configs", "test", "inputs", "interval", "debug", "version", "help",
];
/// Those of them that take a value (the next argument, unless given as `-name=value`).
const TAKES_VALUE: [&str; 3] = ["configs", "inputs", "interval"];

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
    pub(crate) configs: PathBuf,
    /// one-shot check: proxy for one interval, print samples to stdout in Categraf's --test format, push nothing
    #[arg(long)]
    pub(crate) test: bool,
    /// colon-separated input names, Categraf style (only `ollama` exists here)
    #[arg(long)]
    pub(crate) inputs: Option<String>,
    /// override every interval, integer seconds
    #[arg(long)]
    pub(crate) interval: Option<u64>,
    /// debug logging
    #[arg(long)]
    pub(crate) debug: bool,
}

// === impl Cli ===

impl Cli {
    /// Parses the process's arguments as [`clap::Parser::parse`] does (on an error: the message
    /// and exit 2), after [`categraf_argv`] has given the single-dash long flags two dashes.
    pub fn parse_args() -> Cli {
        <Cli as clap::Parser>::parse_from(categraf_argv(std::env::args_os()))
    }

    /// Errors when `--inputs` is given, not empty, and does not list `ollama`.
    pub(crate) fn check_inputs(&self) -> Result<(), String> {
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
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            interval: self.interval.filter(|n| *n > 0).map(Duration::from_secs),
        }
    }
}

/// `argv` with Go's single-dash spelling of our long flags rewritten to clap's: `-configs`
/// and `-configs=DIR` become `--configs` and `--configs=DIR`, likewise `-test`, `-inputs`,
/// `-interval`, `-debug`, `-version` and `-help`. Everything else is left for clap to take or
/// refuse (`-h`, `-V`, an unknown `-foo`), as is the value after a flag that takes one
/// (`--configs -test` names a directory) and all after `--`.
pub(crate) fn categraf_argv(argv: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut argv = argv.into_iter();
    out.extend(argv.next()); // the program name
    let mut value_next = false;
    for arg in argv.by_ref() {
        let Some(text) = arg.to_str().filter(|_| !value_next) else {
            value_next = false;
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            break;
        }
        let long = text.strip_prefix("--").or_else(|| {
            let name = text.strip_prefix('-')?;
            let bare = name.split_once('=').map_or(name, |(n, _)| n);
            SINGLE_DASH.contains(&bare).then_some(name)
        });
        match long {
            Some(name) => {
                value_next = TAKES_VALUE.contains(&name);
                out.push(format!("--{name}").into());
            }
            None => out.push(arg),
        }
    }
    out.extend(argv);
    out
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("ollama-tap").chain(args.iter().copied());
        Cli::try_parse_from(categraf_argv(argv.map(OsString::from)))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
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

    fn rewritten(args: &[&str]) -> Vec<String> {
        let argv = std::iter::once("ollama-tap").chain(args.iter().copied());
        let out = categraf_argv(argv.map(OsString::from));
        out.into_iter()
            .skip(1)
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_get_two_dashes() {
        assert_eq!(
            rewritten(&[
                "-configs",
                "conf",
                "-test",
                "-inputs=ollama",
                "-interval",
                "5"
            ]),
            [
                "--configs",
                "conf",
                "--test",
                "--inputs=ollama",
                "--interval",
                "5"
            ]
        );
        assert_eq!(
            rewritten(&["-debug", "-version", "-help", "-configs=/etc/x"]),
            ["--debug", "--version", "--help", "--configs=/etc/x"]
        );
        let cli = parse(&["-configs", "/etc/categraf/conf", "-test", "-interval=5"]);
        assert_eq!(cli.configs, PathBuf::from("/etc/categraf/conf"));
        assert!(cli.test);
        assert_eq!(cli.overrides().interval, Some(Duration::from_secs(5)));
    }

    #[test]
    fn short_flags_unknown_flags_values_and_what_follows_double_dash_are_left_alone() {
        for args in [
            &["-h"][..],
            &["-V"],
            &["-foo"],
            &["-foo=1"],
            &["-c", "conf"],
            &["-testing"],
            &["--configs", "-test"],
            &["--inputs", "-debug", "--interval", "-version"],
            &["--", "-test"],
            &["-"],
        ] {
            assert_eq!(rewritten(args), args, "{args:?}");
        }
        // the value of a single-dash flag that takes one is not a flag either
        assert_eq!(rewritten(&["-configs", "-test"]), ["--configs", "-test"]);
        assert_eq!(
            rewritten(&["-configs=-debug", "-debug"]),
            ["--configs=-debug", "--debug"]
        );
    }
}
