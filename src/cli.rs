//! TEMPORARY STUB (replaced by the cli module).
use std::path::PathBuf;
#[derive(clap::Parser, Debug)]
#[command(name = "ollama-tap", version)]
pub struct Cli {
    #[arg(long, env = "CATEGRAF_CONFIGS", default_value = "conf")]
    pub configs: PathBuf,
    #[arg(long)]
    pub test: bool,
    #[arg(long)]
    pub inputs: Option<String>,
    #[arg(long)]
    pub interval: Option<u64>,
    #[arg(long)]
    pub debug: bool,
}
impl Cli {
    pub fn check_inputs(&self) -> Result<(), String> {
        Ok(())
    }
    pub fn overrides(&self) -> crate::config::Overrides {
        Default::default()
    }
}
