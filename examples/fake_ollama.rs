//! Runs the fake Ollama backend used by the tests, for poking at ollama-tap by hand.
//!
//! ```text
//! cargo run --example fake_ollama -- --listen 127.0.0.1:11434
//! curl http://127.0.0.1:11434/api/generate -d '{"model":"llama3.2","prompt":"why is the sky blue? [[tokens:8]] [[delay:200]]"}'
//! ```
//!
//! Prompt directives (`[[tokens:N]]`, `[[delay:MS]]`, `[[error_after:K]]`, ...) are described in
//! `tests/common/fake_ollama/mod.rs`. Stops on Ctrl-C.

#[path = "../tests/common/fake_ollama/mod.rs"]
mod fake_ollama;

use std::net::SocketAddr;

fn usage() -> ! {
    eprintln!("usage: fake_ollama [--listen ADDR]   (default 127.0.0.1:11434)");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = "127.0.0.1:11434".parse().expect("default address");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--listen" | "-l" => args.next().unwrap_or_else(|| usage()),
            a if a.starts_with("--listen=") => a["--listen=".len()..].to_string(),
            "--help" | "-h" => usage(),
            _ => usage(),
        };
        listen = value.parse().unwrap_or_else(|e| {
            eprintln!("fake_ollama: bad address {value:?}: {e}");
            std::process::exit(2);
        });
    }
    let fake = match fake_ollama::FakeOllama::start_on(listen).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake_ollama: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("fake ollama listening on {}", fake.url());
    let _ = tokio::signal::ctrl_c().await;
    let stats = fake.stats();
    fake.stop().await;
    println!(
        "fake ollama stopped: {} requests, {} prompt tokens and {} eval tokens sent, {} disconnects",
        stats.requests, stats.prompt_tokens_sent, stats.eval_tokens_sent, stats.disconnects
    );
}
